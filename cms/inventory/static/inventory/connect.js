// The Add/Edit server page: fields by connection type, Test Connection, LAN search, Enable.
(function () {
  "use strict";
  const script = document.currentScript;
  const form = script.closest("form") || document.querySelector("#content-main form");
  const result = document.getElementById("cms-connect-result");
  const resultsRow = document.getElementById("cms-search-results");
  const role = script.dataset.role;

  const field = (name) => form.querySelector(`[name="${name}"]`);
  const row = (name) => form.querySelector(`.form-row.field-${name}`);

  function showFieldsForType() {
    const quick = field("connection_type").value === "quickconnect";
    for (const name of ["host", "port", "use_https"]) {
      if (row(name)) row(name).hidden = quick;
    }
    if (row("quickconnect_id")) row("quickconnect_id").hidden = !quick;
    // The search only works for the IP address/FQDN type.
    document.getElementById("cms-search").hidden = quick;
  }

  function post(url, extra) {
    const body = new FormData(form);
    body.set("pk", script.dataset.pk);
    for (const [key, value] of Object.entries(extra || {})) body.set(key, value);
    return fetch(url, { method: "POST", body, credentials: "same-origin" }).then((r) =>
      r.json().then((data) => ({ status: r.status, data }))
    );
  }

  function say(text, ok) {
    result.textContent = text;
    result.className = ok ? "cms-ok" : "cms-error";
  }

  function testConnection() {
    say("Testing…", true);
    post(script.dataset.test).then(({ data }) => {
      if (data.errors) {
        say(Object.entries(data.errors).map(([k, v]) => `${k}: ${v.join(" ")}`).join("; "), false);
      } else if (data.ok) {
        say(`Connected: ${data.name} (${data.model}), version ${data.version}, ` +
            `CMS mode ${data.cms_mode}${data.cms_enabled ? "" : " (CMS service not enabled)"}`, true);
      } else {
        say(`Failed (${data.error_code}): ${data.message}`, false);
      }
    }).catch(() => say("The CMS did not answer.", false));
  }

  function use(found) {
    field("connection_type").value = "address";
    field("host").value = found.address;
    field("port").value = found.port;
    if (field("use_https")) field("use_https").checked = !!found.https;
    if (field("name") && !field("name").value) field("name").value = found.name;
    showFieldsForType();
    say(`Filled in ${found.name} at ${found.address}:${found.port}.`, true);
  }

  // Enable: the password goes in the dialog's password field, never in a prompt. The
  // dialog comes after the page's form (a form inside it would submit the page's own),
  // so after this script: it is looked up once the page is parsed.
  const dialogField = (id) => document.getElementById(id);
  let dialog = null;
  let enabling = null;

  function enable(found, button) {
    enabling = { found, button };
    dialogField("cms-enable-server").textContent = `${found.name} (${found.model}) at ` +
      `${found.address}:${found.port}, as a ${role} server.`;
    dialogField("cms-enable-password").value = "";
    dialogField("cms-enable-other-hosts").checked = false;
    dialogField("cms-enable-local").checked = false;
    dialog.showModal();
    dialogField("cms-enable-password").focus();
  }

  function wireDialog() {
    dialog = dialogField("cms-enable-dialog");
    dialog.addEventListener("close", () => {
      if (enabling && dialog.returnValue !== "ok") enabling.button.focus();
    });
    dialogField("cms-enable-ok").addEventListener("click", enableNow);
  }

  function enableNow() {
    const { found, button } = enabling;
    const password = dialogField("cms-enable-password").value;
    button.disabled = true;
    say("Enabling…", true);
    post(script.dataset.enable, {
      connection_type: "address", host: found.address, port: found.port,
      use_https: found.https ? "on" : "", admin_password_input: password,
      refuse_other_hosts: dialogField("cms-enable-other-hosts").checked ? "on" : "",
      refuse_local_changes: dialogField("cms-enable-local").checked ? "on" : "",
    }).then(({ data }) => {
      say(data.message || Object.values(data.errors || {}).flat().join(" ") ||
          "The CMS could not enable it.", !!data.ok);
      if (data.ok) {
        found.cms_enabled = true;
        found.cms_mode = data.cms_mode;
        field("admin_password_input").value = password;
        use(found);
        say(data.message, true);
      } else {
        button.disabled = false;
      }
    }).catch(() => { say("The CMS did not answer.", false); button.disabled = false; });
  }

  function search() {
    say("Searching the LAN…", true);
    post(script.dataset.search).then(({ status, data }) => {
      if (status !== 200) {
        say(data.message || "The search failed.", false);
        return;
      }
      const body = resultsRow.querySelector("tbody");
      body.replaceChildren();
      for (const found of data.results || []) {
        const tr = document.createElement("tr");
        for (const text of [found.name, found.model, `${found.address}:${found.port}`,
                            found.cms_enabled ? found.cms_mode : "CMS service not enabled",
                            found.status_label]) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.append(td);
        }
        tr.lastChild.title = found.status_detail || "";  // the CMS's status: what it says
        const action = document.createElement("td");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "button";
        if (found.status !== "available") {
          button.textContent = "Use";
          button.disabled = true;
          button.title = found.status_detail || found.status_label;
        } else if (!found.cms_enabled) {
          button.textContent = "Enable";
          button.addEventListener("click", () => enable(found, button));
        } else {
          button.textContent = "Use";
          button.disabled = !found.selectable;
          button.title = button.disabled ? `Its CMS mode is ${found.cms_mode}` : "";
          button.addEventListener("click", () => use(found));
        }
        action.append(button);
        tr.append(action);
        body.append(tr);
      }
      resultsRow.hidden = false;
      say(`${(data.results || []).length} server(s) found.`, true);
    }).catch(() => say("The search failed.", false));
  }

  field("connection_type").addEventListener("change", showFieldsForType);
  document.getElementById("cms-test-connection").addEventListener("click", testConnection);
  document.getElementById("cms-search").addEventListener("click", search);
  showFieldsForType();
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", wireDialog);
  } else {
    wireDialog();
  }
})();
