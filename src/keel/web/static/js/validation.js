// What a validation error from the API says to a person. The API's `errors` items are
// pydantic's ({loc, msg, type, ctx?}); their msg is written for developers ("String should have
// at least 3 characters"), so each known type gets a sentence naming the field's label. A type
// not known here keeps the server's msg.

/** "full_name" -> "Full name": the label of a field the form does not show. */
export function labelOf(name) {
  const words = String(name || "").replace(/_/g, " ").trim();
  return words ? words[0].toUpperCase() + words.slice(1) : "This field";
}

function count(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

// Pydantic's own prefixes, and email-validator's, mean nothing to a person.
function tidy(message) {
  return String(message || "")
    .replace(/^(Value|Assertion) error, /, "")
    .replace(/^value is not a valid email address: /, "");
}

const SENTENCES = {
  missing: (label) => `${label} is required.`,
  string_too_short: (label, { min_length: min }) =>
    min === undefined || min <= 1 ? `${label} must not be empty.` : `${label} needs at least ${count(min, "character")}.`,
  string_too_long: (label, { max_length: max }) => max !== undefined && `${label} can be at most ${count(max, "character")}.`,
  too_short: (label, { min_length: min }) => min !== undefined && `${label} needs at least ${count(min, "item")}.`,
  too_long: (label, { max_length: max }) => max !== undefined && `${label} can have at most ${count(max, "item")}.`,
  string_pattern_mismatch: (label) => `${label} contains characters that are not allowed here.`,
  greater_than_equal: (label, { ge }) => ge !== undefined && `${label} must be ${ge} or more.`,
  greater_than: (label, { gt }) => gt !== undefined && `${label} must be more than ${gt}.`,
  less_than_equal: (label, { le }) => le !== undefined && `${label} must be ${le} or less.`,
  less_than: (label, { lt }) => lt !== undefined && `${label} must be less than ${lt}.`,
  int_parsing: (label) => `${label} must be a whole number.`,
  int_type: (label) => `${label} must be a whole number.`,
  float_parsing: (label) => `${label} must be a number.`,
  bool_parsing: (label) => `${label} must be yes or no.`,
  date_parsing: (label) => `${label} must be a date.`,
  date_from_datetime_parsing: (label) => `${label} must be a date.`,
  datetime_parsing: (label) => `${label} must be a date and time.`,
  enum: (label) => `Choose one of the ${label.toLowerCase()} options offered.`,
  literal_error: (label) => `Choose one of the ${label.toLowerCase()} options offered.`,
  url_parsing: (label) => `${label} must be a web address, like https://example.com.`,
  url_scheme: (label) => `${label} must be a web address starting with https://.`,
  // Our own validators (and email-validator) already write for people: their message, tidied.
  value_error: () => null,
};

/**
 * The sentence for one API validation error about the field labelled `label`: its type's
 * sentence when there is one, else the server's msg (without pydantic's "Value error, "). With no
 * label (an error about the request as a whole) it is the server's msg.
 */
export function humanMessage(error, label) {
  const sentence = label && SENTENCES[error && error.type];
  const said = sentence && sentence(label, (error && error.ctx) || {});
  return said || tidy(error && error.msg) || "This value is not valid.";
}
