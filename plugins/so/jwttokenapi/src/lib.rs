//! websockify's `JWTTokenApi` resolver as a loadable plugin: `libjwttokenapi.so`. The logic
//! lives in `websockify-jwt`, which the proxy also links in for `--token-plugin JWTTokenApi`.

websockify_plugin_api::export_plugin!(websockify_jwt::JWTTokenApi);
