// s3ferry serve: refresh the page's body every two seconds, and post its forms without leaving the page.
// Without this script the page still works: the forms post and redirect back, the body is as loaded.
"use strict";
(function () {
  const content = document.getElementById("content");
  if (!content) return; // the login form
  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const answer = await fetch("/?part=body", { credentials: "same-origin", cache: "no-store" });
      if (answer.redirected || answer.status === 401) { window.location.assign("/login"); return; }
      if (answer.ok) content.innerHTML = await answer.text();
    } catch (e) {
      // the service restarts or the network blinks: the next tick tries again
    } finally {
      busy = false;
    }
  }
  content.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    event.preventDefault();
    await fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" });
    await refresh();
  });
  window.setInterval(refresh, 2000);
})();
