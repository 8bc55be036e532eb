// Behaviour every page shares: "select all" checkboxes and confirmation of destructive buttons.
document.querySelectorAll("input.select-all").forEach(function (box) {
  box.addEventListener("change", function () {
    box.closest("table").querySelectorAll("tbody input[type=checkbox]").forEach(function (other) {
      other.checked = box.checked;
    });
  });
});
document.querySelectorAll("button[data-confirm]").forEach(function (button) {
  button.addEventListener("click", function (event) {
    if (!window.confirm(button.dataset.confirm)) event.preventDefault();
  });
});
