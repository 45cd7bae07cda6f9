//! websockify's `TokenRedis` resolver as a loadable plugin: `libtokenredis.so`. The logic
//! lives in `websockify-redis`, which the proxy also links in for `--token-plugin TokenRedis`.

websockify_plugin_api::export_plugin!(websockify_redis::TokenRedis);
