// The Add Batch page: search the LAN, tick servers, Edit (password and name) or Enable
// them, then OK adds them all through the API, or none with each failing row saying why.
(function () {
  "use strict";
  const script = document.currentScript;
  const role = script.dataset.role;
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]").value;
  const $ = (id) => document.getElementById(id);
  const status = $("cms-batch-status");
  const table = $("cms-batch-results");
  const body = table.querySelector("tbody");
  const okButton = $("cms-batch-ok");
  // The page's buttons act through the API; the form itself is never submitted.
  $("cms-batch").addEventListener("submit", (event) => event.preventDefault());
  const naming = { rule: "default", prefix: "" };
  const RULES = { default: "Default server name", model_no: "Model-No.", prefix_no: "Prefix-No." };
  let rows = []; // {found, checked, password, customName, result, ok}

  function say(text, ok) {
    status.textContent = text;
    status.className = ok ? "cms-ok" : "cms-error";
  }

  function postForm(url, fields) {
    const data = new FormData();
    for (const [key, value] of Object.entries(fields)) data.set(key, value);
    return fetch(url, { method: "POST", body: data, credentials: "same-origin",
                        headers: { "X-CSRFToken": csrf } })
      .then((r) => r.json().then((json) => ({ status: r.status, data: json })));
  }

  const usable = (row) => row.found.cms_enabled && row.found.cms_mode === role;

  function whyNot(row) {
    if (!row.found.cms_enabled) return "Its CMS service is not enabled: use Enable.";
    if (row.found.cms_mode !== role) return `Its CMS mode is ${row.found.cms_mode}, not ${role}.`;
    return "";
  }

  function plannedNames() {
    // What OK will ask for; the CMS skips numbers whose names are taken.
    const counters = {};
    return rows.map((row) => {
      if (!row.checked) return "";
      if (row.customName) return row.customName;
      if (naming.rule === "default") return row.found.name;
      const base = naming.rule === "model_no" ? row.found.model : naming.prefix || "[Prefix]";
      counters[base] = (counters[base] || 0) + 1;
      return `${base}-${counters[base]}`;
    });
  }

  function cell(tr, content) {
    const td = document.createElement("td");
    if (content instanceof Node) td.append(content); else td.textContent = content;
    tr.append(td);
    return td;
  }

  function button(text, label, key, onClick) {
    const b = document.createElement("button");
    b.dataset.focusKey = key;
    b.type = "button";
    b.className = "button";
    b.textContent = text;
    b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }

  function render() {
    // The table is rebuilt: keep the keyboard focus on the same control.
    const focused = document.activeElement && document.activeElement.dataset.focusKey;
    renderRows();
    if (focused) focusKey(focused);
  }

  function focusKey(key) {
    const el = body.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (el) el.focus();
  }

  function renderRows() {
    const names = plannedNames();
    body.replaceChildren();
    rows.forEach((row, index) => {
      const f = row.found;
      const tr = document.createElement("tr");
      tr.dataset.serial = f.serial;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.className = "cms-batch-select";
      box.checked = row.checked;
      box.disabled = !usable(row);
      box.setAttribute("aria-label", `Select ${f.name}`);
      box.dataset.focusKey = `select-${f.serial}`;
      box.addEventListener("change", () => { row.checked = box.checked; row.result = ""; render(); });
      cell(tr, box);
      cell(tr, f.name);
      cell(tr, f.model);
      cell(tr, `${f.address}:${f.port}`);
      cell(tr, f.cms_enabled ? f.cms_mode : "CMS service not enabled");
      cell(tr, row.password ? "entered" : "-");
      cell(tr, names[index]).className = "cms-batch-name";
      const result = cell(tr, row.result || (usable(row) ? "" : whyNot(row)));
      result.className = "cms-batch-result " + (row.ok ? "cms-row-ok" : row.result ? "cms-row-error" : "");
      const actions = document.createElement("span");
      if (usable(row)) {
        actions.append(button("Edit", `Edit ${f.name}`, `edit-${f.serial}`, () => openEdit(row)));
        tr.addEventListener("dblclick", () => openEdit(row));
      } else if (!f.cms_enabled) {
        actions.append(button("Enable", `Enable the CMS service of ${f.name}`,
                              `enable-${f.serial}`, () => openEnable(row)));
      }
      cell(tr, actions);
      body.append(tr);
    });
    table.hidden = rows.length === 0;
    $("cms-batch-all").checked = rows.some(usable) && rows.filter(usable).every((r) => r.checked);
    okButton.disabled = !rows.some((r) => r.checked);
    const prefix = naming.rule === "prefix_no" ? ` with the prefix "${naming.prefix}"` : "";
    $("cms-batch-naming").textContent = `Naming rule: ${RULES[naming.rule]}${prefix}` +
      (naming.rule === "default" ? "." : "; numbers skip names already in use.");
  }

  function search() {
    say("Searching the LAN…", true);
    postForm(script.dataset.search, {}).then(({ data }) => {
      const before = new Map(rows.map((r) => [r.found.serial, r]));
      rows = (data.results || []).map((found) => {
        const kept = before.get(found.serial);
        return kept ? { ...kept, found } : { found, checked: false, password: "", customName: "" };
      });
      render();
      say(data.message || `${rows.length} server(s) found.`, !data.message);
    }).catch(() => say("The search failed.", false));
  }

  // -- Edit: admin password and name ------------------------------------------
  const edit = $("cms-batch-edit");
  let editing = null;

  function showPrefix() {
    $("cms-edit-prefix-row").hidden = $("cms-edit-rule").value !== "prefix_no";
  }

  function openEdit(row) {
    editing = row;
    $("cms-batch-edit-server").textContent = `${row.found.name} (${row.found.model}) at ` +
      `${row.found.address}:${row.found.port}`;
    $("cms-edit-password").value = row.password;
    $("cms-edit-name").value = row.customName;
    $(row.customName ? "cms-naming-custom" : "cms-naming-rule").checked = true;
    $("cms-edit-rule").value = naming.rule;
    $("cms-edit-prefix").value = naming.prefix;
    $("cms-edit-error").hidden = true;
    showPrefix();
    edit.showModal();
    $("cms-edit-password").focus();
  }

  // Closing a dialog returns to the row it was opened from (the table was rebuilt).
  edit.addEventListener("close", () => editing && focusKey(`edit-${editing.found.serial}`));

  $("cms-edit-rule").addEventListener("change", showPrefix);
  $("cms-edit-name").addEventListener("input", () => { $("cms-naming-custom").checked = true; });
  $("cms-edit-ok").addEventListener("click", (event) => {
    const custom = $("cms-naming-custom").checked;
    const problems = [];
    if (!$("cms-edit-password").value) problems.push("Enter the admin password of the server.");
    if (custom && !$("cms-edit-name").value) problems.push("Enter the custom name.");
    if (!custom && $("cms-edit-rule").value === "prefix_no" && !$("cms-edit-prefix").value) {
      problems.push("Enter the custom prefix.");
    }
    if (problems.length) {
      event.preventDefault();
      $("cms-edit-error").textContent = problems.join(" ");
      $("cms-edit-error").hidden = false;
      return;
    }
    editing.password = $("cms-edit-password").value;
    editing.customName = custom ? $("cms-edit-name").value : "";
    if (!custom) {
      naming.rule = $("cms-edit-rule").value;
      naming.prefix = $("cms-edit-prefix").value;
    }
    editing.checked = true;
    editing.result = "";
    editing.ok = false;
    render();
  });

  // -- Enable: the CMS service, with the security lock --------------------------
  const enable = $("cms-enable-dialog");
  let enabling = null;

  function openEnable(row) {
    enabling = row;
    $("cms-enable-server").textContent = `${row.found.name} (${row.found.model}) at ` +
      `${row.found.address}:${row.found.port}, as a ${role} server.`;
    $("cms-enable-password").value = "";
    $("cms-enable-other-hosts").checked = false; // each server's lock is chosen for it
    $("cms-enable-local").checked = false;
    enable.showModal();
    $("cms-enable-password").focus();
  }

  enable.addEventListener("close", () => {
    if (!enabling) return;
    const serial = enabling.found.serial;
    focusKey(`edit-${serial}`);
    if (!body.contains(document.activeElement)) focusKey(`enable-${serial}`);
  });

  $("cms-enable-ok").addEventListener("click", () => {
    const row = enabling;
    const password = $("cms-enable-password").value;
    row.result = "Enabling…";
    render();
    postForm(script.dataset.enable, {
      connection_type: "address", host: row.found.address, port: row.found.port,
      use_https: row.found.https ? "on" : "", admin_password_input: password,
      refuse_other_hosts: $("cms-enable-other-hosts").checked ? "on" : "",
      refuse_local_changes: $("cms-enable-local").checked ? "on" : "",
    }).then(({ data }) => {
      if (data.ok) {
        row.found = { ...row.found, cms_enabled: true, cms_mode: data.cms_mode };
        row.password = password;
        row.checked = usable(row);
        row.ok = true;
      } else {
        row.ok = false;
      }
      row.result = data.message ||
        Object.values(data.errors || {}).flat().join(" ") || "The CMS could not enable it.";
      render();
    }).catch(() => { row.result = "The CMS did not answer."; render(); });
  });

  // -- OK: add them all, or none ------------------------------------------------
  function add() {
    const chosen = rows.filter((r) => r.checked);
    let missing = false;
    for (const row of chosen) {
      row.ok = false;
      row.result = row.password ? "" : "Enter its admin password: double-click it or click Edit.";
      missing = missing || !row.password;
    }
    if (missing) { render(); say("Some servers have no admin password yet.", false); return; }
    const payload = {
      team: Number($("cms-batch-team").value),
      naming_rule: naming.rule,
      prefix: naming.prefix,
      servers: chosen.map((r) => ({
        connection_type: "address", host: r.found.address, port: r.found.port,
        use_https: !!r.found.https, admin_password: r.password, custom_name: r.customName,
      })),
    };
    okButton.disabled = true;
    say(`Adding ${chosen.length} server(s)…`, true);
    fetch(script.dataset.api, {
      method: "POST", credentials: "same-origin", body: JSON.stringify(payload),
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
    }).then((r) => r.json().then((data) => ({ status: r.status, data }))).then(({ status: code, data }) => {
      if (code === 201) {
        say(`Added ${data.length} server(s): ${data.map((s) => s.name).join(", ")}.`, true);
        window.location.assign(script.dataset.changelist);
        return;
      }
      const error = data.error || {};
      const perRow = error.rows || {};
      const fields = error.fields || {};
      chosen.forEach((row, i) => {
        const problems = perRow[i] || perRow[String(i)] || [];
        const itemFields = Array.isArray(fields.servers) ? fields.servers[i] || {} : {};
        const fieldProblems = Object.entries(itemFields).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`);
        row.result = [...problems, ...fieldProblems].join(" ") ||
          (Object.keys(perRow).length ? "Can be added, but the others cannot: nothing was added." : "");
      });
      const general = [...(error.naming || [])];
      for (const [key, value] of Object.entries(fields)) {
        if (key !== "servers") general.push(`${key}: ${[].concat(value).join(" ")}`);
      }
      render();
      say(`${error.message || "The CMS refused the batch."} ${general.join(" ")}`.trim(), false);
    }).catch(() => { say("The CMS did not answer.", false); render(); });
  }

  $("cms-batch-all").addEventListener("change", (event) => {
    for (const row of rows) if (usable(row)) row.checked = event.target.checked;
    render();
  });
  $("cms-batch-search").addEventListener("click", search);
  okButton.addEventListener("click", add);
  render();
})();
