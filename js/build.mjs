// Bundles src/index.ts (and the CSS it imports) into ../patchwidget/static/widget.{js,css}.
import * as esbuild from "esbuild";

const options = {
  entryPoints: ["src/index.ts"],
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: !process.argv.includes("--dev"),
  sourcemap: false,
  outfile: "../patchwidget/static/widget.js",
  logLevel: "info",
};

if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context({ ...options, minify: false });
  await ctx.watch();
} else {
  await esbuild.build(options);
}
