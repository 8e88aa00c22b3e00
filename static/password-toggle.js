// "Show password" beside every password field on authsite's pages, so a person can check what
// they typed. The button switches the field between type=password and type=text; its words say
// what pressing it will do ("Show password", "Hide password"), which is why it has no
// aria-pressed as well: a name that changes with a pressed state would say the change twice.
// A field is a password field again before its form is sent (browsers remember what was typed
// in text fields), and whenever the page is left unsent: the back button (bfcache) or a restored
// session must not bring it back in plain sight. Without this script the fields simply stay
// hidden-as-you-type.
(() => {
  "use strict";

  const SHOW = "Show password";
  const HIDE = "Hide password";

  function addToggle(field) {
    if (!field.id) {
      return; // aria-controls needs an id; every field on our pages has one
    }
    const button = document.createElement("button");
    button.type = "button";
    button.className = "password-toggle";
    button.id = `${field.id}-toggle`;
    button.textContent = SHOW;
    button.setAttribute("aria-controls", field.id);
    button.addEventListener("click", () => show(field, button, field.type === "password"));
    if (field.form) {
      field.form.addEventListener("submit", () => show(field, button, false));
    }
    // After the field (and before its error message), without moving the field itself: moving
    // it would take the focus away from an autofocused field.
    field.after(button);
    window.addEventListener("pagehide", () => show(field, button, false));
  }

  function show(field, button, visible) {
    field.type = visible ? "text" : "password";
    button.textContent = visible ? HIDE : SHOW;
  }

  document.querySelectorAll("input[type=password]").forEach(addToggle);
})();
