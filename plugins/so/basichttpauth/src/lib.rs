//! websockify's `BasicHTTPAuth` auth plugin as a loadable plugin: `libbasichttpauth.so`. The logic lives in
//! `websockify-auth`, which the proxy also links in for `--auth-plugin BasicHTTPAuth`.

websockify_plugin_api::export_plugin!(websockify_auth::BasicHTTPAuth);
