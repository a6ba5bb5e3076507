// Reorder the failover servers protecting a recording server: Move up / Move down swap a
// row with its neighbour and renumber the priorities in the order shown (0 is tried first).
(function () {
  "use strict";
  function group() {
    return document.querySelector("[id$='protections-group']");
  }

  function rows() {
    return Array.from(group().querySelectorAll("tbody tr.form-row"))
      .filter((tr) => !tr.classList.contains("empty-form"));
  }

  function renumber() {
    // Only rows that name a failover server: a blank added row stays untouched, so
    // the admin ignores it instead of asking for its failover server.
    rows().filter((tr) => {
      const select = tr.querySelector("select[name$='-failover_server']");
      return select && select.value;
    }).forEach((tr, index) => {
      const input = tr.querySelector("input[name$='-priority']");
      if (input) input.value = index;
    });
  }

  function move(tr, step) {
    const list = rows();
    const target = list[list.indexOf(tr) + step];
    if (!target) return;
    if (step < 0) target.before(tr); else target.after(tr);
    renumber();
  }

  function decorate(tr) {
    const cell = tr.querySelector("td.field-priority");
    if (!cell || cell.querySelector(".cms-move")) return;
    for (const [label, step, glyph] of [["Move up", -1, "\u25B2"], ["Move down", 1, "\u25BC"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button cms-move";
      button.textContent = glyph;
      button.title = label;
      button.setAttribute("aria-label", label);
      button.addEventListener("click", () => {
        move(tr, step);
        button.focus();
      });
      cell.append(" ", button);
    }
  }

  function init() {
    if (!group()) return;
    rows().forEach(decorate);
    // Rows added with "Add another" get the buttons too.
    document.addEventListener("formset:added", (event) => {
      const tr = event.target.closest ? event.target.closest("tr") || event.target : event.target;
      if (tr && tr.matches && tr.matches("tr.form-row")) decorate(tr);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
