// Passkeys on authsite's pages. A form marked data-passkey="get" (sign in, second step, confirm)
// or data-passkey="create" (add a passkey) runs the WebAuthn ceremony when it is submitted: the
// options come from the site's JSON API (data-options), the browser's answer goes back in the
// form's hidden "credential" field, and the form is then submitted as usual, so the server answers
// with an ordinary page or redirect. A form marked data-autofill also offers passkeys in the
// username field's autofill (conditional mediation) as soon as the page loads.
// Without this script, or without WebAuthn, "get" forms stay hidden and the pages work as before.
(() => {
  "use strict";

  const supported = Boolean(window.PublicKeyCredential && navigator.credentials);
  let autofill = null; // { controller, done } while an autofill request is pending

  // base64url <-> ArrayBuffer, for browsers without the JSON helpers of WebAuthn level 3.
  function toBytes(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    return Uint8Array.from(binary, (char) => char.charCodeAt(0)).buffer;
  }

  function toText(buffer) {
    const binary = String.fromCharCode(...new Uint8Array(buffer));
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(json) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: toBytes(json.challenge),
      user: { ...json.user, id: toBytes(json.user.id) },
      excludeCredentials: (json.excludeCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) })),
    };
  }

  function requestOptions(json) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: toBytes(json.challenge),
      allowCredentials: (json.allowCredentials || []).map((c) => ({ ...c, id: toBytes(c.id) })),
    };
  }

  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") {
      return credential.toJSON();
    }
    const response = credential.response;
    const json = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toText(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      json.response.attestationObject = toText(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = toText(response.authenticatorData);
      json.response.signature = toText(response.signature);
      if (response.userHandle) {
        json.response.userHandle = toText(response.userHandle);
      }
    }
    return json;
  }

  function say(form, message) {
    const status = form.querySelector(".passkey-status");
    if (status) {
      status.textContent = message;
      status.hidden = !message;
    }
  }

  // The options, with a fresh challenge in this browser's cookie; null when the page should be
  // submitted without a passkey (the server then asks the user to confirm who they are first).
  async function fetchOptions(form) {
    const response = await fetch(form.dataset.options, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: "{}",
      credentials: "same-origin",
    });
    if (response.status === 403 && form.dataset.passkey === "create") {
      return null;
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.detail || "The site could not start the passkey request.");
    }
    return (await response.json()).publicKey;
  }

  function send(form, credential) {
    form.elements.credential.value = JSON.stringify(credentialJSON(credential));
    for (const field of form.querySelectorAll("[data-copy-from]")) {
      const source = document.getElementById(field.dataset.copyFrom);
      field.value = source && source.checked ? "on" : "";
    }
    form.submit();
  }

  function explain(error, creating) {
    if (error.name === "NotAllowedError") {
      return "The passkey request was cancelled or timed out. Try again when you are ready.";
    }
    if (error.name === "InvalidStateError" && creating) {
      return "This device already holds a passkey for your account.";
    }
    if (error.name === "SecurityError") {
      return "This browser refused the request: the site's address does not match its passkeys.";
    }
    return error.message || "The passkey request failed.";
  }

  async function stopAutofill() {
    if (autofill) {
      const pending = autofill;
      autofill = null;
      pending.controller.abort();
      await pending.done; // Chromium refuses a new request while the last one is pending
    }
  }

  async function runCeremony(form) {
    const creating = form.dataset.passkey === "create";
    const button = form.querySelector("button[type=submit]");
    say(form, "");
    button.disabled = true;
    try {
      await stopAutofill();
      const options = await fetchOptions(form);
      if (options === null) {
        form.submit();
        return;
      }
      const credential = creating
        ? await navigator.credentials.create({ publicKey: creationOptions(options) })
        : await navigator.credentials.get({ publicKey: requestOptions(options) });
      if (credential) {
        send(form, credential);
        return;
      }
    } catch (error) {
      say(form, explain(error, creating));
    }
    button.disabled = false;
  }

  async function offerInAutofill(form) {
    if (!PublicKeyCredential.isConditionalMediationAvailable) {
      return;
    }
    if (!(await PublicKeyCredential.isConditionalMediationAvailable())) {
      return;
    }
    const controller = new AbortController();
    let finish;
    const pending = { controller, done: new Promise((resolve) => { finish = resolve; }) };
    autofill = pending;
    try {
      const options = await fetchOptions(form);
      const credential = await navigator.credentials.get({
        publicKey: requestOptions(options),
        mediation: "conditional",
        signal: controller.signal,
      });
      if (credential && autofill === pending) {
        autofill = null;
        send(form, credential);
      }
    } catch (error) {
      // Aborted (a button's ceremony took over) or NotAllowedError (nothing to offer, or the
      // autofill timed out): the user asked for nothing, so there is nothing to tell them.
      if (error.name !== "AbortError" && error.name !== "NotAllowedError" && autofill === pending) {
        say(form, explain(error, false));
      }
    } finally {
      finish();
    }
  }

  for (const form of document.querySelectorAll("form[data-passkey]")) {
    if (!supported) {
      if (form.dataset.passkey === "create") {
        say(form, "This browser cannot make passkeys. Try a current Chrome, Edge, Firefox or Safari.");
        form.querySelector("button[type=submit]").disabled = true;
      }
      continue;
    }
    form.hidden = false;
    form.addEventListener("submit", (event) => {
      if (!form.elements.credential.value) {
        event.preventDefault();
        runCeremony(form);
      }
    });
    if ("autofill" in form.dataset) {
      offerInAutofill(form);
    }
  }
})();
