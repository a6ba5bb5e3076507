// The replace dialog: another choice than the one previewed shows its consequences
// again before any OK (the server checks it too).
document.getElementById("id_replacement").addEventListener("change", function () {
  var plan = document.getElementById("cms-replace-plan");
  if (plan) plan.remove();
  document.getElementById("cms-replace-submit").value = "Show what will happen";
});
