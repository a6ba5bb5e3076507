// Keeps status cells and restoration progress current without reloading the page.
// Elements: <span class="cms-status" data-server="ID"> and <div class="cms-job" data-job="ID">.
(function () {
  "use strict";
  const url = document.currentScript.dataset.url;
  const every = 3000;

  function ids(selector, attribute) {
    return Array.from(document.querySelectorAll(selector)).map((el) => el.dataset[attribute]);
  }

  function size(bytes) {
    return (bytes / 1e6).toFixed(1) + " MB";
  }

  function render(data) {
    document.querySelectorAll(".cms-status").forEach((el) => {
      const label = data.servers[el.dataset.server];
      if (label !== undefined && el.textContent !== label) {
        el.textContent = label;
        el.classList.add("cms-changed");
      }
    });
    document.querySelectorAll(".cms-job").forEach((el) => {
      const job = data.jobs[el.dataset.job];
      if (!job) return;
      el.querySelector("progress").value = job.percent;
      const left = job.seconds_left === null ? "" : `, about ${job.seconds_left} s left`;
      el.querySelector(".cms-job-text").textContent =
        `${job.state}: ${job.percent}% — ${job.files_done}/${job.files_total} files, ` +
        `${size(job.bytes_done)} of ${size(job.bytes_total)}, ${job.rate_mbps} MB/s${left}`;
    });
  }

  function poll() {
    const servers = ids(".cms-status", "server");
    const jobs = ids(".cms-job", "job");
    if (!servers.length && !jobs.length) return;
    const query = `?servers=${servers.join(",")}&jobs=${jobs.join(",")}`;
    fetch(url + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : null))
      .then((data) => data && render(data))
      .catch(() => {}); // the next poll tries again
  }

  setInterval(poll, every);
})();
