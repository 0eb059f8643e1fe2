// Dashboard: confirm before a recall (it changes every printed code's answer at once).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("recall-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  }
});
