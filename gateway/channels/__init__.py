"""Thin protocol adapters (SFTP, FTP, HTTPS) over one virtual-folder model."""
