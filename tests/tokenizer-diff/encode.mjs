// Reference side of the tokenizer differential test: Hugging Face's own JS tokenizer on real files.
//
//   node encode.mjs <model-folder>   < {"encode": [strings...], "decode": [[ids...], ...]}
//   -> {"encode": [{"ids": [...], "decoded": "...", "decodedSkip": "..."}...], "decode": ["...", ...]}
//
// <model-folder> holds tokenizer.json and tokenizer_config.json. Strings are encoded the way the
// tokenizer does by default (special tokens added per its post-processor). "decode" decodes arbitrary id
// lists. Output is JSON on stdout.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

const folder = process.argv[2];
if (!folder) {
  console.error("usage: node encode.mjs <folder-with-tokenizer.json> < input.json");
  process.exit(2);
}
const tokenizerJson = JSON.parse(readFileSync(join(folder, "tokenizer.json"), "utf8"));
const tokenizerConfig = JSON.parse(readFileSync(join(folder, "tokenizer_config.json"), "utf8"));
const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);

const input = JSON.parse(readFileSync(0, "utf8"));
const decode = (ids, skip) => (ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: skip }));

const out = { encode: [], decode: [] };
for (const text of input.encode ?? []) {
  const ids = tokenizer.encode(text).ids;
  out.encode.push({ ids, decoded: decode(ids, false), decodedSkip: decode(ids, true) });
}
for (const ids of input.decode ?? []) {
  out.decode.push(decode(ids, false));
}
process.stdout.write(JSON.stringify(out));
