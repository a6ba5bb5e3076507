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

  function enable(found, button) {
    const password = window.prompt(`Admin password of ${found.name} to enable its CMS service:`);
    if (!password) return;
    button.disabled = true;
    post(script.dataset.enable, {
      connection_type: "address", host: found.address, port: found.port,
      use_https: found.https ? "on" : "", admin_password_input: password,
    }).then(({ data }) => {
      say(data.message, data.ok);
      if (data.ok) {
        found.cms_enabled = true;
        found.cms_mode = data.cms_mode;
        field("admin_password_input").value = password;
        use(found);
      } else {
        button.disabled = false;
      }
    });
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
                            found.cms_enabled ? found.cms_mode : "CMS service not enabled"]) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.append(td);
        }
        const action = document.createElement("td");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "button";
        if (!found.cms_enabled) {
          button.textContent = "Enable";
          button.addEventListener("click", () => enable(found, button));
        } else {
          button.textContent = "Use";
          button.disabled = found.cms_mode !== role;
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
})();
