#!/bin/sh
# The login program of the browser test's telnetd (`telnetd --exec-login`): asks as
# /bin/login does, then starts a shell with a prompt the test looks for. A scripted login
# keeps the machine's accounts untouched; the telnet server in front of it is the real one.
# Usage (as telnetd runs it): login.sh USER PASSWORD, the test's own account.
printf 'wstelnet test login: '
read -r user
stty -echo
printf 'Password: '
read -r password
stty echo
echo
if [ "$user" = "$1" ] && [ "$password" = "$2" ]; then
    echo "Welcome, $user."
    PS1="$user@wstelnet\$ " exec sh -i
fi
echo 'Login incorrect'
exit 1
