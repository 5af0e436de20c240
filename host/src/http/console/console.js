// Keeps the dashboard's numbers live: every element with data-stat="<name>"
// inside [data-live] shows that field of the JSON at the data-live URL,
// after "≈ " where the JSON says "<name>_estimated".
(function () {
  const live = document.querySelector("[data-live]");
  if (!live) return;
  const url = live.getAttribute("data-live");
  async function refresh() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
      if (!response.ok) return;
      const stats = await response.json();
      for (const element of live.querySelectorAll("[data-stat]")) {
        const name = element.getAttribute("data-stat");
        const value = stats[name];
        if (value !== undefined) element.textContent = (stats[name + "_estimated"] ? "≈ " : "") + String(value);
      }
    } catch (_) {
      // The next tick tries again.
    }
  }
  setInterval(refresh, 2000);
})();
