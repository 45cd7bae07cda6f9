//! websockify's `ExpectOrigin` auth plugin as a loadable plugin: `libexpectorigin.so`. The logic lives in
//! `websockify-auth`, which the proxy also links in for `--auth-plugin ExpectOrigin`.

websockify_plugin_api::export_plugin!(websockify_auth::ExpectOrigin);
