//! websockify's `ClientCertCNAuth` auth plugin as a loadable plugin: `libclientcertcnauth.so`. The logic lives in
//! `websockify-auth`, which the proxy also links in for `--auth-plugin ClientCertCNAuth`.

websockify_plugin_api::export_plugin!(websockify_auth::ClientCertCNAuth);
