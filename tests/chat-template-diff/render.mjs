// Reference renderer for PiServe's chat-template differential tests.
// Reads {template, cases: [{messages, add_generation_prompt, bos_token, eos_token, extra}]} as JSON on stdin
// and prints a JSON array with, per case, {"output": "..."} or {"error": "..."} (e.g. raise_exception's message).
// Variables are given as transformers' apply_chat_template does: the special tokens, then the extra
// variables, then messages and add_generation_prompt. A null special token is left undefined.
import { Template } from "@huggingface/jinja";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));

let template;
try {
  template = new Template(input.template);
} catch (e) {
  process.stdout.write(JSON.stringify({ parseError: String(e?.message ?? e) }));
  process.exit(0);
}

const results = input.cases.map((c) => {
  const vars = {};
  if (c.bos_token != null) vars.bos_token = c.bos_token;
  if (c.eos_token != null) vars.eos_token = c.eos_token;
  Object.assign(vars, c.extra ?? {});
  vars.messages = c.messages;
  vars.add_generation_prompt = c.add_generation_prompt;
  try {
    return { output: template.render(vars) };
  } catch (e) {
    return { error: String(e?.message ?? e) };
  }
});
process.stdout.write(JSON.stringify(results));
