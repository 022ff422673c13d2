# SPDX-License-Identifier: LGPL-2.1-or-later
# What a package of Mycelia Mesh must hold, for the .deb and the .rpm tests alike: the files
# `meson install --prefix=/usr` puts on a machine, the daemons, units and D-Bus files of each.
"""expected_files(unitdir) lists absolute paths; unitdir is systemd.pc's systemdsystemunitdir
(/lib/systemd/system on Debian 12, /usr/lib/systemd/system on Fedora)."""

# Every daemon with its bus interface, in start order.
DAEMONS = (('gossipd', 'Gossip1'), ('discoveryd', 'Discovery1'), ('routerd', 'Router1'),
           ('shardd', 'ShardStore1'), ('shimd', 'Shim1'))
SOCKETS = ('mycelia-gossipd.socket', 'mycelia-shardd.socket', 'mycelia-shimd.socket', 'mycelia-shimd-mesh.socket')


def expected_files(unitdir):
    want = ['/usr/bin/mycelia-node', '/usr/bin/myceliactl',
            '/usr/lib/sysusers.d/mycelia.conf', '/usr/lib/tmpfiles.d/mycelia.conf',
            '/usr/share/mycelia/ollama-mycelia.conf', '%s/mycelia.target' % unitdir]
    want += ['/usr/share/dbus-1/interfaces/org.mycelia.Process1.xml']
    want += ['/usr/share/mycelia/www/%s' % f for f in ('index.html', 'mycelia.js', 'mycelia.css', 'favicon.svg')]
    want += ['%s/%s' % (unitdir, s) for s in SOCKETS]
    for d, iface in DAEMONS:
        want += ['/usr/libexec/mycelia/mycelia-%s' % d,
                 '%s/mycelia-%s.service' % (unitdir, d),
                 '/usr/share/dbus-1/system.d/org.mycelia.%s.conf' % iface,
                 '/usr/share/dbus-1/system-services/org.mycelia.%s.service' % iface,
                 '/usr/share/dbus-1/interfaces/org.mycelia.%s.xml' % iface]
    return want
