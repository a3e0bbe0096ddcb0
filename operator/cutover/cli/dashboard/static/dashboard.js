// cutover dashboard: swaps in the parts the server pushes (Server-Sent Events) and sends the
// manual requests when the server allows them. No framework, no build step.
"use strict";
(function () {
  const live = document.getElementById("live");
  const token = (document.querySelector('meta[name="cutover-token"]') || {}).content || "";

  function setLive(on, text) {
    live.textContent = text;
    live.className = "live " + (on ? "on" : "off");
  }

  function connect() {
    const source = new EventSource(document.body.dataset.stream);
    source.addEventListener("open", () => setLive(true, "live"));
    source.addEventListener("parts", (event) => {
      const parts = JSON.parse(event.data);
      for (const [id, html] of Object.entries(parts)) {
        const element = document.getElementById(id);
        if (element) element.innerHTML = html;
      }
      setLive(true, "live");
      document.dispatchEvent(new CustomEvent("cutover:updated"));
    });
    // EventSource reconnects by itself; say so meanwhile.
    source.addEventListener("error", () => setLive(false, "reconnecting…"));
  }

  async function act(button) {
    const { verb, namespace, name, effect } = button.dataset;
    const question = `${verb} ${namespace}/${name}?` + (effect ? `\n\n${effect}` : "");
    if (!window.confirm(question)) return;
    const result = document.getElementById("action-result");
    button.disabled = true;
    try {
      const path = `/act/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/${verb}`;
      const response = await fetch(path, { method: "POST", headers: { "X-Cutover-Token": token } });
      const answer = await response.json();
      if (result) {
        result.textContent = answer.message;
        result.className = answer.ok ? "ok" : "bad";
      }
    } catch (error) {
      if (result) {
        result.textContent = `${verb} failed: ${error}`;
        result.className = "bad";
      }
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-verb]");
    if (button && !button.disabled) act(button);
  });

  connect();
})();
