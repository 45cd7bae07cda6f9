//! websockify's `ReadOnlyTokenFile` resolver as a loadable plugin: `libreadonlytokenfile.so`, for
//! `--token-plugin /path/to/libreadonlytokenfile.so`. The logic lives in `websockify-tokenfile`, which the
//! proxy also links in for `--token-plugin ReadOnlyTokenFile`.

websockify_plugin_api::export_plugin!(websockify_tokenfile::ReadOnlyTokenFile);
