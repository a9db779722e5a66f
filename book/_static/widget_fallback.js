// The static site has no Python kernel, so an ipywidgets explorer cannot run here. Each place
// where a notebook displayed a widget gets a short note instead; the chapter shows a static
// figure of the same explorer beside it. (The book loads no widget code from a CDN.)
document.addEventListener("DOMContentLoaded", function () {
  const views = document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-view+json"]'
  );
  views.forEach(function (view) {
    const note = document.createElement("div");
    note.className = "widget-fallback admonition note";
    note.setAttribute("role", "note");
    note.innerHTML =
      '<p class="admonition-title">Interactive explorer</p>' +
      "<p>This explorer needs a running Python kernel. Open the page as a notebook " +
      "(the launch button at the top: Colab or Binder, or your own Jupyter) to use it; " +
      "the static figure beside it shows the same explorer at a few settings.</p>";
    view.parentNode.insertBefore(note, view);
  });
});
