# A NixOS VM with the module: an echo target, one instance, and a WebSocket round trip.
self:
{ pkgs, ... }:
{
  name = "websockify";
  nodes.machine = {
    imports = [ self.nixosModules.default ];
    services.websockify.instances.echo = {
      listen = "6080";
      target = "127.0.0.1:7000";
      metricsListen = "127.0.0.1:9187";
    };
    systemd.services.echo = {
      wantedBy = [ "multi-user.target" ];
      script = "${pkgs.socat}/bin/socat TCP-LISTEN:7000,fork,reuseaddr EXEC:cat";
    };
    environment.systemPackages = [
      pkgs.curl
      pkgs.python3
    ];
  };
  testScript = ''
    machine.wait_for_unit("echo.service")
    machine.wait_for_unit("websockify-echo.service")
    machine.wait_for_open_port(6080)
    machine.succeed("curl -sf http://127.0.0.1:9187/readyz")
    machine.succeed("python3 ${./vm-client.py} 127.0.0.1 6080")
    machine.succeed("systemctl reload websockify-echo.service")
    machine.succeed("python3 ${./vm-client.py} 127.0.0.1 6080")
  '';
}
