/**
 * The search box's little language -> an Email/query FilterCondition (RFC 8621 §4.4.1).
 *
 * In:   text such as `from:bob subject:"q3 report" has:attachment after:2024-01-01 invoice`.
 * Out:  {@link parseSearch}: a filter (an AND of conditions; free words search `text`, which the
 *       server matches against the headers and the body), or null for an empty query.
 * Fails: never; an unknown `word:` is searched as text, a malformed date is ignored.
 */

export type Filter = Record<string, unknown>;

const TOKEN = /(\w+):(?:"([^"]*)"|(\S+))|"([^"]*)"|(\S+)/g;

function day(value: string, endOfDay: boolean): string | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!m) return null;
  const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
  if (isNaN(d.getTime())) return null;
  if (endOfDay) d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function parseSearch(input: string): Filter | null {
  const conditions: Filter[] = [];
  const words: string[] = [];
  for (const m of input.matchAll(TOKEN)) {
    const [, key, quoted, bare, phrase, word] = m;
    if (key) {
      const value = quoted ?? bare ?? "";
      switch (key.toLowerCase()) {
        case "from":
        case "to":
        case "cc":
        case "bcc":
        case "subject":
        case "body":
          if (value) conditions.push({ [key.toLowerCase()]: value });
          continue;
        case "has":
          if (/^attachments?$/i.test(value)) conditions.push({ hasAttachment: true });
          continue;
        case "is":
          if (/^unread$/i.test(value)) conditions.push({ notKeyword: "$seen" });
          else if (/^read$/i.test(value)) conditions.push({ hasKeyword: "$seen" });
          else if (/^(flagged|starred)$/i.test(value)) conditions.push({ hasKeyword: "$flagged" });
          continue;
        case "after": {
          const d = day(value, false); // on or after that day (UTC)
          if (d) conditions.push({ after: d });
          continue;
        }
        case "before": {
          const d = day(value, false); // strictly before that day
          if (d) conditions.push({ before: d });
          continue;
        }
        case "on": {
          const a = day(value, false);
          const b = day(value, true);
          if (a && b) conditions.push({ after: a }, { before: b });
          continue;
        }
        default:
          words.push(m[0]);
          continue;
      }
    }
    const w = phrase ?? word;
    if (w) words.push(w);
  }
  if (words.length) conditions.push({ text: words.join(" ") });
  if (!conditions.length) return null;
  return conditions.length === 1 ? conditions[0] : { operator: "AND", conditions };
}
