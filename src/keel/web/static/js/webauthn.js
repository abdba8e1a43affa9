// Passkeys in the browser: the API speaks WebAuthn options and credentials as JSON with base64url
// binary fields; the browser wants ArrayBuffers. Browsers that have the JSON methods
// (parseCreationOptionsFromJSON, toJSON) use them; the others get the small converters here.

function fromBase64url(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "=");
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)).buffer;
}

function toBase64url(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// A passkey belongs to a domain: browsers refuse them on an address such as 127.0.0.1 or [::1].
const ON_IP_ADDRESS = /^(\d{1,3}\.){3}\d{1,3}$|^\[/.test(location.hostname);

/** Whether passkeys can work here: a browser that has them, on a domain name. */
export function passkeysSupported() {
  return !ON_IP_ADDRESS && typeof window.PublicKeyCredential === "function" && Boolean(navigator.credentials);
}

/** Whether the browser offers passkeys in the email field's autofill (conditional mediation). */
export async function autofillSupported() {
  if (!passkeysSupported() || typeof PublicKeyCredential.isConditionalMediationAvailable !== "function") return false;
  try {
    return await PublicKeyCredential.isConditionalMediationAvailable();
  } catch {
    return false;
  }
}

const withIds = (list) => (list || []).map((item) => ({ ...item, id: fromBase64url(item.id) }));

function creationOptions(json) {
  if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: fromBase64url(json.challenge),
    user: { ...json.user, id: fromBase64url(json.user.id) },
    excludeCredentials: withIds(json.excludeCredentials),
  };
}

function requestOptions(json) {
  if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  return { ...json, challenge: fromBase64url(json.challenge), allowCredentials: withIds(json.allowCredentials) };
}

/** A credential as the API takes it: the WebAuthn JSON form, binary fields in base64url. */
function credentialJSON(credential) {
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const { response } = credential;
  const binary = ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle"];
  const fields = {};
  for (const name of binary) if (response[name]) fields[name] = toBase64url(response[name]);
  if (typeof response.getTransports === "function") fields.transports = response.getTransports();
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? null,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: fields,
  };
}

// Some servers wrap the options as {publicKey: {...}}, as the browser API does; take either.
const unwrap = (json) => json.publicKey || json;

/** Make a passkey from the API's creation options; resolves with the credential as JSON. */
export async function createPasskey(optionsJSON) {
  const credential = await navigator.credentials.create({ publicKey: creationOptions(unwrap(optionsJSON)) });
  return credentialJSON(credential);
}

/**
 * Use a passkey with the API's request options; resolves with the credential as JSON, or null
 * when the browser gave none. `mediation: "conditional"` waits for the person to pick one in autofill.
 */
export async function getPasskey(optionsJSON, { signal, mediation } = {}) {
  const options = { publicKey: requestOptions(unwrap(optionsJSON)), signal };
  if (mediation) options.mediation = mediation;
  const credential = await navigator.credentials.get(options);
  return credential ? credentialJSON(credential) : null;
}

/** What a failed passkey ceremony means to a person; null when they simply cancelled it. */
export function passkeyProblem(error) {
  if (error && error.name === "AbortError") return null;
  if (error && error.name === "NotAllowedError") return "No passkey was used: the request was cancelled or timed out.";
  if (error && error.name === "InvalidStateError") return "This device already holds a passkey for your account.";
  if (error && error.name === "SecurityError") return "Passkeys do not work on this address. Open Keel at its usual address and try again.";
  return null;
}
