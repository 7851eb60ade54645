#!/bin/sh
# Exercises /etc/init.d/S60shoal under BusyBox init: the daemon started at sysinit answers
# on its API socket; status, stop and start behave; then the board powers off, and the
# shutdown action stops the daemon again. Every result is one "bbinit: ..." console line.
rc=/etc/init.d/S60shoal
if shoal -H unix:///run/shoal/shoal.sock version >/dev/null 2>&1; then
    echo "bbinit: api answers"
else
    echo "bbinit: api does not answer"
fi
$rc status
echo "bbinit: status=$?"
$rc stop
$rc status
echo "bbinit: status-after-stop=$?"
if [ -S /run/shoal/shoal.sock ]; then echo "bbinit: socket left behind"; fi
$rc start
if shoal -H unix:///run/shoal/shoal.sock info >/dev/null 2>&1; then
    echo "bbinit: api answers after restart"
fi
echo "bbinit: powering off"
poweroff
