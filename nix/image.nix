# An OCI image with the binary as its entrypoint, no shell, a non-root user, configured by
# WEBSOCKIFY_* variables: docker run -e WEBSOCKIFY_TARGET=vnc:5900 -p 6080:6080 IMAGE
{
  dockerTools,
  websockify,
}:
dockerTools.buildLayeredImage {
  name = "websockify";
  tag = websockify.version;
  # CA certificates for --ssl-target and token APIs over HTTPS.
  contents = [ dockerTools.caCertificates ];
  config = {
    Entrypoint = [ "${websockify}/bin/websockify" ];
    User = "65532:65532";
    Env = [
      "WEBSOCKIFY_LISTEN=0.0.0.0:6080"
      "WEBSOCKIFY_METRICS_LISTEN=0.0.0.0:9187"
    ];
    ExposedPorts = {
      "6080/tcp" = { };
      "9187/tcp" = { };
    };
    Labels = {
      "org.opencontainers.image.title" = "websockify-rs";
      "org.opencontainers.image.version" = websockify.version;
      "org.opencontainers.image.licenses" = "LGPL-3.0-only";
    };
  };
}
