//! websockify's `BaseTokenAPI` resolver as a loadable plugin: `libbasetokenapi.so`. The logic lives in
//! `websockify-tokenapi`, which the proxy also links in for `--token-plugin BaseTokenAPI`.

websockify_plugin_api::export_plugin!(websockify_tokenapi::BaseTokenAPI);
