// Add Batch: the rows, their statuses and planned names are the server's (htmx swaps
// them in). This script does only what the server cannot: open and close the windows,
// keep the typed passwords in password fields of the page (never rendered back), move
// the focus back where it was.
(function () {
  "use strict";
  const script = document.currentScript;
  const role = script.dataset.role;
  const $ = (id) => document.getElementById(id);
  const rows = $("cms-batch-rows");
  const passwords = $("cms-batch-passwords");
  const edit = $("cms-batch-edit");
  const editBody = $("cms-batch-edit-body");
  let editing = null; // serial of the row whose Edit window is open
  $("cms-batch").addEventListener("submit", (event) => event.preventDefault());

  function keep(name, value, type) {
    let input = passwords.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!input) {
      input = document.createElement("input");
      input.type = type;
      input.name = name;
      input.autocomplete = "off";
      passwords.append(input);
    }
    input.value = value;
  }

  function focusRow(serial) {
    const target = $(`cms-edit-${serial}`) || $(`cms-enable-${serial}`) || $(`cms-pick-${serial}`);
    if (target) target.focus();
  }

  // -- Edit: the window's body comes from the server (with its errors, if any) --------
  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target === editBody) {
      editing = editBody.querySelector("[name=serial]").value;
      edit.showModal();
      $("cms-edit-password").focus();
    }
  });
  editBody.addEventListener("change", (event) => {
    if (event.target.id === "cms-edit-rule") {
      $("cms-edit-prefix-row").hidden = event.target.value !== "prefix_no";
      $("cms-naming-rule").checked = true;
    }
  });
  editBody.addEventListener("input", (event) => {
    if (event.target.id === "cms-edit-name") $("cms-naming-custom").checked = true;
  });
  // The server accepted the window: keep its password, close it.
  document.body.addEventListener("cms-edit-done", (event) => {
    const serial = event.detail.serial;
    keep(`password-${serial}`, $("cms-edit-password").value, "password");
    edit.close();
  });
  edit.addEventListener("close", () => {
    editBody.replaceChildren(); // the typed password leaves the window with it
    if (editing !== null) focusRow(editing);
  });
  // Double-click a row: its Edit window.
  rows.addEventListener("dblclick", (event) => {
    const tr = event.target.closest("tr[data-serial]");
    const button = tr && tr.querySelector(".cms-batch-edit");
    if (button) button.click();
  });

  // -- Enable: the row asks for the CMS service, turned on only when the batch is added
  // (the server renders the row; no node is asked anything until OK adds the batch).
  const enable = $("cms-enable-dialog");
  const enableErrors = $("cms-enable-errors");
  let enabling = null;
  rows.addEventListener("click", (event) => {
    const button = event.target.closest(".cms-batch-enable");
    if (!button) return;
    enabling = { ...button.dataset };
    $("cms-enable-server").textContent = `${enabling.name} (${enabling.model}) at ` +
      `${enabling.address}:${enabling.port}, as a ${role} server, when the batch is added.`;
    enableErrors.replaceChildren();
    $("cms-enable-password").value = "";
    $("cms-enable-other-hosts").checked = false; // each server's lock is chosen for it
    $("cms-enable-local").checked = false;
    enable.showModal();
    $("cms-enable-password").focus();
  });
  enable.addEventListener("close", () => {
    $("cms-enable-password").value = ""; // kept only in the page's own password field
    if (enabling) focusRow(enabling.serial);
  });
  $("cms-enable-ok").addEventListener("click", (event) => {
    event.preventDefault(); // the window stays open until the server accepts it
    htmx.ajax("POST", rows.getAttribute("hx-post"), {
      source: rows, target: rows, swap: "innerHTML",
      values: {
        op: "enable_ok", serial: enabling.serial,
        enable_password: $("cms-enable-password").value,
        enable_other_hosts: $("cms-enable-other-hosts").checked ? "on" : "",
        enable_local: $("cms-enable-local").checked ? "on" : "",
      },
    });
  });
  // The server accepted the window: keep its password, close it.
  document.body.addEventListener("cms-enable-done", (event) => {
    keep(`password-${event.detail.serial}`, $("cms-enable-password").value, "password");
    enable.close();
  });
})();
