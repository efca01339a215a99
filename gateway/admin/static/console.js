// Progressive enhancement only: every form works without this file.
"use strict";
(function () {
  // The password policy, shown as the person types (the server decides).
  var policy = document.getElementById("policy");
  var input = document.querySelector("input.checks-policy");
  if (policy && input) {
    var minLength = parseInt(policy.dataset.minLength, 10);
    var minCount = parseInt(policy.dataset.minCount, 10);
    var specials = policy.dataset.specials || "";
    var mark = function (rule, met) {
      var item = policy.querySelector('[data-rule="' + rule + '"]');
      if (item) { item.className = met ? "met" : "unmet"; }
    };
    input.addEventListener("input", function () {
      var value = input.value;
      var count = 0;
      for (var i = 0; i < value.length; i++) {
        var ch = value.charAt(i);
        if ((ch >= "0" && ch <= "9") || specials.indexOf(ch) >= 0) { count++; }
      }
      mark("length", value.length >= minLength);
      mark("count", count >= minCount);
    });
  }
  // The language picker submits itself once a language is picked.
  document.querySelectorAll("select.autosubmit").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // The overview's print button.
  document.querySelectorAll("button.print").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  });
})();
