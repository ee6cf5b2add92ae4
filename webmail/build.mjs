// Build the static app into dist/: index.html plus content-hashed assets (app-<hash>.js, app-<hash>.css).
//
// In:   src/main.ts (and what it imports, DOMPurify and the modules' CSS included), static/index.html,
//       static/app.css; test/*.test.ts (node:test unit tests of the DOM-free modules, run before building).
// Out:  dist/index.html naming the hashed files (so they can be cached as immutable and index.html
//       never is), dist/assets/*; nothing else. Unless `--no-check`: `tsc --noEmit` and the unit tests first.
// Fails: exits non-zero with the compiler's or esbuild's message; dist/ is left as it was until
//       the new build is complete (written to dist.tmp, then swapped in).
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync }
  from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "dist");
const tmp = join(here, "dist.tmp");
const args = new Set(process.argv.slice(2));

if (!args.has("--no-check")) {
  const tsc = join(here, "node_modules", "typescript", "bin", "tsc");
  try {
    execFileSync(process.execPath, [tsc, "--noEmit", "-p", here], { stdio: "inherit" });
  } catch {
    console.error("webmail: type check failed");
    process.exit(1);
  }
}

if (!args.has("--no-check")) await unitTests();

// The node:test files, bundled (TypeScript) into one temporary module and run: a second or less.
async function unitTests() {
  const tests = readdirSync(join(here, "test")).filter((f) => f.endsWith(".test.ts")).sort();
  if (!tests.length) return;
  const dir = mkdtempSync(join(tmpdir(), "webmail-test-"));
  try {
    await build({
      stdin: { contents: tests.map((f) => `import "./test/${f}";`).join("\n"), resolveDir: here, loader: "ts" },
      bundle: true, platform: "node", format: "esm", outfile: join(dir, "tests.mjs"), logLevel: "warning",
    });
    execFileSync(process.execPath, ["--test", "--test-reporter=dot", join(dir, "tests.mjs")], { stdio: "inherit" });
  } catch {
    console.error("webmail: unit tests failed");
    process.exit(1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

rmSync(tmp, { recursive: true, force: true });
mkdirSync(join(tmp, "assets"), { recursive: true });

const result = await build({
  entryPoints: { app: join(here, "src", "main.ts") },
  bundle: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  minify: !args.has("--dev"),
  sourcemap: false,
  legalComments: "eof",
  write: false,
  outdir: join(tmp, "assets"),
  logLevel: "warning",
});

function hashed(name, ext, data) {
  const digest = createHash("sha256").update(data).digest("hex").slice(0, 12);
  const file = `${name}-${digest}.${ext}`;
  writeFileSync(join(tmp, "assets", file), data);
  return `assets/${file}`;
}

const js = result.outputFiles.find((f) => f.path.endsWith(".js"));
const jsPath = hashed("app", "js", js.contents);
// static/app.css, then the CSS the modules import (compose, settings), which esbuild bundles beside the script
const imported = result.outputFiles.filter((f) => f.path.endsWith(".css")).map((f) => Buffer.from(f.contents));
const css = Buffer.concat([readFileSync(join(here, "static", "app.css")), ...imported]);
const cssPath = hashed("app", "css", css);

const html = readFileSync(join(here, "static", "index.html"), "utf8")
  .replace("%APP_CSS%", cssPath)
  .replace("%APP_JS%", jsPath);
if (html.includes("%APP_")) {
  console.error("webmail: static/index.html has a placeholder left");
  process.exit(1);
}
writeFileSync(join(tmp, "index.html"), html);
for (const extra of ["favicon.svg"]) {
  const src = join(here, "static", extra);
  if (existsSync(src)) cpSync(src, join(tmp, extra));
}

rmSync(out, { recursive: true, force: true });
renameSync(tmp, out);
console.log(`webmail: built ${out} (${jsPath}, ${cssPath})`);
