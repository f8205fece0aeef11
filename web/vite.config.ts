/// <reference types="vitest/config" />
// Builds the UI into ../toru/web_dist, which the server serves under a strict
// Content-Security-Policy (docs/ui.md#building): no inline code, nothing from elsewhere.
import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

declare const process: { env: Record<string, string | undefined> };

// `npm run dev` proxies the API to a Toru started with STEERING_PORT=3999 (override with TORU_API).
const api = process.env.TORU_API ?? "http://127.0.0.1:3999";

export default defineConfig({
  plugins: [preact()],
  base: "/",
  build: {
    outDir: "../toru/web_dist",
    emptyOutDir: true,
    assetsDir: "assets",
    // The polyfill is an inline script, which the policy refuses; every browser we support has modulepreload.
    modulePreload: { polyfill: false },
    // Keep every asset a file of its own: nothing becomes an inline data: URL the policy might refuse.
    assetsInlineLimit: 0,
    target: "es2022",
    sourcemap: false,
  },
  server: {
    port: 5173,
    proxy: {
      "/api": { target: api, changeOrigin: false },
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    restoreMocks: true,
  },
});
