// Hello World (Python): the plugin's page in Toru's web UI. Plain JavaScript, no build step.
//
// Front-end contract (docs/plugins/frontend.md): Toru loads this file and calls
// window.ToruPlugins["hello-plugin-python"].mount(el, api) with an empty element, and
// unmount(el) when the user leaves the page. api.fetch(path, init) is fetch() relative to
// the plugin's route (it returns a fetch Response); api.showToast(message, kind) may exist.
(function () {
  "use strict";

  var PLUGIN_ID = "hello-plugin-python";
  var states = new WeakMap(); // el -> {alive: boolean}

  function element(tag, attributes, text) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      node.setAttribute(name, attributes[name]);
    });
    if (text !== undefined) {
      node.textContent = text; // never innerHTML: the text comes from the server
    }
    return node;
  }

  async function getJSON(api, path, init) {
    var response = await api.fetch(path, init);
    var body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      var reason = body && body.error ? body.error : "HTTP " + response.status;
      throw new Error(reason);
    }
    return body;
  }

  function toast(api, message, kind) {
    if (typeof api.showToast === "function") {
      api.showToast(message, kind);
    }
  }

  function mount(el, api) {
    var state = { alive: true };
    states.set(el, state);
    el.textContent = "";

    var root = element("section", { class: "hello-plugin-python" });
    var title = element("h2", {}, "🐍 Hello World (Python)");
    var message = element("p", { "data-role": "message" }, "Loading…");
    var details = element("p", { "data-role": "details", style: "opacity: 0.7" }, "");
    var counter = element("p", { "data-role": "counter" }, "Count: …");
    var button = element("button", { type: "button", "data-role": "increment" }, "Increment");
    var error = element("p", { "data-role": "error", role: "alert", style: "color: #c0392b" }, "");
    root.append(title, message, details, counter, button, error);
    el.appendChild(root);

    function showError(prefix, failure) {
      if (state.alive) {
        error.textContent = prefix + ": " + failure.message;
      }
      toast(api, prefix + ": " + failure.message, "error");
    }

    getJSON(api, "/")
      .then(function (data) {
        if (!state.alive) return;
        message.textContent = data.message;
        details.textContent = "Instance " + (data.instance_id || "unknown") + " · " + data.time;
      })
      .catch(function (failure) {
        showError("Could not load the greeting", failure);
      });

    getJSON(api, "/counter")
      .then(function (data) {
        if (state.alive) counter.textContent = "Count: " + data.count;
      })
      .catch(function (failure) {
        showError("Could not load the counter", failure);
      });

    state.onClick = async function () {
      button.disabled = true;
      error.textContent = "";
      try {
        var data = await getJSON(api, "/counter/increment", { method: "POST" });
        if (state.alive) counter.textContent = "Count: " + data.count;
        toast(api, "Counter is now " + data.count, "success");
      } catch (failure) {
        showError("Could not increment", failure);
      } finally {
        if (state.alive) button.disabled = false;
      }
    };
    button.addEventListener("click", state.onClick);
    state.button = button;
  }

  function unmount(el) {
    var state = states.get(el);
    if (state) {
      state.alive = false; // late replies must not touch a page that is gone
      if (state.button) state.button.removeEventListener("click", state.onClick);
      states.delete(el);
    }
    el.textContent = "";
  }

  window.ToruPlugins = window.ToruPlugins || {};
  window.ToruPlugins[PLUGIN_ID] = { mount: mount, unmount: unmount };
})();
