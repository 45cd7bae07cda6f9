//! websockify's `TokenFileName` resolver as a loadable plugin: `libtokenfilename.so`. The logic lives in
//! `websockify-tokenfile`, which the proxy also links in for `--token-plugin TokenFileName`.

websockify_plugin_api::export_plugin!(websockify_tokenfile::TokenFileName);
