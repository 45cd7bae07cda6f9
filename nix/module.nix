# services.websockify: one systemd service per instance, hardened, reloaded by SIGHUP.
#
#   services.websockify.instances.console = {
#     listen = "6080";
#     target = "127.0.0.1:5900";
#     metricsListen = "127.0.0.1:9187";
#   };
self:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.websockify;

  instanceOptions = {
    options = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to run this instance.";
      };
      package = mkOption {
        type = types.package;
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        description = "The websockify-rs package.";
      };
      listen = mkOption {
        type = types.str;
        example = "0.0.0.0:6080";
        description = "[source_addr:]source_port to listen on.";
      };
      target = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "127.0.0.1:5900";
        description = "target_addr:target_port, unless tokenPlugin picks targets.";
      };
      tokenPlugin = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "TokenFile";
        description = "A token plugin (TokenFile, ReadOnlyTokenFile, TokenRedis, ...).";
      };
      tokenSource = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "The token plugin's source (a file, a URL, a Redis address).";
      };
      cert = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = "TLS certificate (PEM), read through systemd credentials.";
      };
      key = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = "TLS private key (PEM), read through systemd credentials.";
      };
      metricsListen = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "127.0.0.1:9187";
        description = "Where /metrics, /healthz and /readyz are served.";
      };
      shutdownGrace = mkOption {
        type = types.int;
        default = 30;
        description = "Seconds sessions may drain after the service is stopped.";
      };
      settings = mkOption {
        type = types.attrsOf (
          types.oneOf [
            types.str
            types.int
            types.bool
          ]
        );
        default = { };
        example = {
          heartbeat = 30;
        };
        description = "Any other setting by its file key; each becomes WEBSOCKIFY_<KEY>.";
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open the listen port in the firewall.";
      };
    };
  };

  enabled = lib.filterAttrs (_: i: i.enable) cfg.instances;

  port = i: lib.toInt (lib.last (lib.splitString ":" i.listen));

  environment =
    i:
    let
      value = v: if builtins.isBool v then (if v then "true" else "false") else toString v;
      settings =
        {
          listen = i.listen;
          shutdown_grace = i.shutdownGrace;
        }
        // lib.optionalAttrs (i.target != null) { inherit (i) target; }
        // lib.optionalAttrs (i.tokenPlugin != null) { token_plugin = i.tokenPlugin; }
        // lib.optionalAttrs (i.tokenSource != null) { token_source = i.tokenSource; }
        // lib.optionalAttrs (i.metricsListen != null) { metrics_listen = i.metricsListen; }
        // lib.optionalAttrs (i.cert != null) { cert = "%d/cert"; }
        // lib.optionalAttrs (i.key != null) { key = "%d/key"; }
        // i.settings;
    in
    lib.mapAttrsToList (k: v: "WEBSOCKIFY_${lib.toUpper k}=${value v}") settings;

  service =
    name: i:
    lib.nameValuePair "websockify-${name}" {
      description = "websockify-rs ${name}: WebSocket to TCP bridge";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        ExecStart = "${i.package}/bin/websockify";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Environment = environment i;
        LoadCredential =
          lib.optional (i.cert != null) "cert:${i.cert}" ++ lib.optional (i.key != null) "key:${i.key}";
        Restart = "on-failure";
        KillSignal = "SIGTERM";
        TimeoutStopSec = i.shutdownGrace + 10;
        DynamicUser = true;
        AmbientCapabilities = lib.optional (port i < 1024) "CAP_NET_BIND_SERVICE";
        CapabilityBoundingSet = lib.optional (port i < 1024) "CAP_NET_BIND_SERVICE";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
        UMask = "0077";
      };
    };
in
{
  options.services.websockify.instances = mkOption {
    type = types.attrsOf (types.submodule instanceOptions);
    default = { };
    description = "websockify-rs instances, each a systemd service websockify-<name>.";
  };

  config = lib.mkIf (enabled != { }) {
    systemd.services = lib.mapAttrs' service enabled;
    networking.firewall.allowedTCPPorts = lib.concatLists (
      lib.mapAttrsToList (_: i: lib.optional i.openFirewall (port i)) enabled
    );
  };
}
