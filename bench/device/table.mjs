// Prints results.jsonl of bench/device/run.sh as a Markdown table: ours, llama.cpp and
// their ratio for prefill and decode, per model file.
// usage: node bench/device/table.mjs path/to/results.jsonl
import { readFileSync } from "node:fs";

const rows = readFileSync(process.argv[2], "utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line));
const files = [...new Set(rows.map((r) => r.file))];
const fmt = (v) => (v === undefined ? "–" : v >= 100 ? v.toFixed(0) : v.toFixed(1));
const ratio = (a, b) => (a === undefined || b === undefined ? "–" : (a / b).toFixed(2));
console.log("| model | prefill ours | prefill llama.cpp | ratio | decode ours | decode llama.cpp | ratio |");
console.log("|---|---:|---:|---:|---:|---:|---:|");
for (const file of files) {
  const ours = rows.find((r) => r.file === file && r.engine === "ours");
  const theirs = rows.find((r) => r.file === file && r.engine === "llama.cpp");
  const [op, od, tp, td] = [ours?.prefill_tok_s, ours?.decode_tok_s, theirs?.prefill_tok_s, theirs?.decode_tok_s];
  console.log(`| ${file} | ${fmt(op)} | ${fmt(tp)} | ${ratio(op, tp)} | ${fmt(od)} | ${fmt(td)} | ${ratio(od, td)} |`);
}
