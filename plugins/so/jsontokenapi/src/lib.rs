//! websockify's `JSONTokenApi` resolver as a loadable plugin: `libjsontokenapi.so`. The logic lives in
//! `websockify-tokenapi`, which the proxy also links in for `--token-plugin JSONTokenApi`.

websockify_plugin_api::export_plugin!(websockify_tokenapi::JSONTokenApi);
