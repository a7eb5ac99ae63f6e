// Apply the stored theme and wall mode before first paint (loaded without defer, so no flash).
(function () {
  var root = document.documentElement;
  try {
    var wall = new URLSearchParams(location.search).get("wall");
    if (wall !== null) localStorage.setItem("quarterdeck.wall", wall === "0" ? "0" : "1");
    var theme = localStorage.getItem("quarterdeck.theme");
    if (theme === "dark" || theme === "light") root.setAttribute("data-theme", theme);
    if (localStorage.getItem("quarterdeck.wall") === "1") root.classList.add("wall");
  } catch (e) { /* storage blocked: system theme, normal mode */ }
})();
