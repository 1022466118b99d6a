// Every cell of an admin list that the stylesheet cut short shows its full text on hover (a static file,
// so the Content-Security-Policy's script-src 'self' allows it; no inline script).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("#result_list td").forEach(function (cell) {
    if (cell.scrollWidth > cell.clientWidth && !cell.title) {
      cell.title = cell.textContent.trim();
    }
  });
});
