"""The sans-IO core: names, sets, signatures, codes and receipts.

Everything here takes bytes, values and an explicit ``now``/``today`` and returns values. No
asyncio, sockets, files, clock or logging: ``tests/test_layering.py`` fails the build otherwise.
"""
