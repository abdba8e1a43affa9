// How a signed-in device and its sign-in are named to a person, on the account page.

/** "Firefox on Windows" from a user agent string; good enough to recognise a device. */
export function describeDevice(userAgent) {
  if (!userAgent) return "Unknown device";
  const browsers = [
    [/Edg\//, "Edge"],
    [/OPR\//, "Opera"],
    [/Firefox\//, "Firefox"],
    [/Chrom(e|ium)\//, "Chrome"],
    [/Safari\//, "Safari"],
    [/^curl\//, "curl"],
    [/python-httpx|python-requests/, "Python script"],
  ];
  const systems = [
    [/Android/, "Android"],
    [/iPhone|iPad/, "iOS"],
    [/Windows/, "Windows"],
    [/Mac OS X|Macintosh/, "macOS"],
    [/CrOS/, "ChromeOS"],
    [/Linux/, "Linux"],
  ];
  const browser = browsers.find(([pattern]) => pattern.test(userAgent));
  const system = systems.find(([pattern]) => pattern.test(userAgent));
  if (!browser && !system) return userAgent.slice(0, 60);
  return [browser ? browser[1] : "A browser", system ? `on ${system[1]}` : null].filter(Boolean).join(" ");
}

// How a session signed in, from its `amr` (RFC 8176 method references), as a person says it.
const SIGN_IN_METHODS = [
  ["pwd", "password"],
  ["hwk", "passkey"],
  ["otp", "authenticator app"],
  ["fed", "social account"],
];

/** "Password + authenticator app" from ["pwd", "otp", "mfa"]; null when there is nothing to say. */
export function describeSignIn(amr) {
  if (!Array.isArray(amr)) return null;
  const names = SIGN_IN_METHODS.filter(([value]) => amr.includes(value)).map(([, name]) => name);
  if (!names.length) return null;
  const text = names.join(" + ");
  return text[0].toUpperCase() + text.slice(1);
}
