import { render } from "preact";
import { App } from "./app";
import { forgetOutdatedBundles } from "./plugin-host/loader";
import { streamStore } from "./stream/store";
import "./styles.css";

// A bundle is run again only when its plugin was disabled, removed or updated.
let plugins = streamStore.getState().plugins;
streamStore.subscribe((state) => {
  if (state.plugins !== plugins) forgetOutdatedBundles(plugins, state.plugins);
  plugins = state.plugins;
});

render(<App />, document.getElementById("app")!);
