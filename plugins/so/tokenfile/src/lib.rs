//! websockify's `TokenFile` resolver as a loadable plugin: `libtokenfile.so`, for
//! `--token-plugin /path/to/libtokenfile.so`. The logic lives in `websockify-tokenfile`, which the
//! proxy also links in for `--token-plugin TokenFile`.

websockify_plugin_api::export_plugin!(websockify_tokenfile::TokenFile);
