// Gives the ipywidgets sliders of a page an accessible name (axe:
// aria-input-field-name). A FloatSlider's description is drawn as a <label>
// beside the slider, but the element screen readers reach is noUiSlider's handle
// (role="slider"), which the label is not tied to: point the handle at it with
// aria-labelledby. Widgets render after the page loads (the embed manager), so
// this watches the page for new sliders.
(function () {
  var serial = 0;

  function nameSliders(root) {
    root.querySelectorAll(".widget-slider").forEach(function (slider) {
      var label = slider.querySelector(".widget-label");
      if (!label || !label.textContent.trim()) {
        return; // no description: the notebook must give the slider one
      }
      if (!label.id) {
        label.id = "widget-label-" + ++serial;
      }
      slider.querySelectorAll('[role="slider"]').forEach(function (handle) {
        if (!handle.hasAttribute("aria-label") && !handle.hasAttribute("aria-labelledby")) {
          handle.setAttribute("aria-labelledby", label.id);
        }
      });
    });
  }

  function start() {
    var pending = false;
    nameSliders(document);
    new MutationObserver(function () {
      if (!pending) {
        pending = true; // once per frame, however many nodes MathJax adds
        requestAnimationFrame(function () {
          pending = false;
          nameSliders(document);
        });
      }
    }).observe(document.body, { childList: true, subtree: true });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
