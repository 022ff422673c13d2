#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The node's private bus: the interfaces of all five daemons match dbus/*.xml, the routing table
# reflects the upstream's models and health, Route() answers, Shim1 counts requests.
import os
import unittest
import xml.etree.ElementTree as ET

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node, wait_until

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'MYCELIA_SHARDD', 'OLLAMA_DOUBLE', 'MYCELIA_DBUS_XML_DIR')

ECS = 'org.freedesktop.DBus.Property.EmitsChangedSignal'


def interface_model(xml_text, name):
    """A comparable description of interface name in an introspection document: methods with
    (arg name, type, direction), signals with (arg name, type), properties with (type, access,
    EmitsChangedSignal). Missing directions and annotations get their D-Bus defaults."""
    root = ET.fromstring(xml_text)
    for iface in root.iter('interface'):
        if iface.get('name') != name:
            continue
        iface_ecs = 'true'
        for a in iface.findall('annotation'):
            if a.get('name') == ECS:
                iface_ecs = a.get('value')
        methods, signals, props = {}, {}, {}
        for m in iface.findall('method'):
            methods[m.get('name')] = [(a.get('name'), a.get('type'), a.get('direction') or 'in')
                                      for a in m.findall('arg')]
        for s in iface.findall('signal'):
            signals[s.get('name')] = [(a.get('name'), a.get('type')) for a in s.findall('arg')]
        for p in iface.findall('property'):
            ecs = iface_ecs
            for a in p.findall('annotation'):
                if a.get('name') == ECS:
                    ecs = a.get('value')
            props[p.get('name')] = (p.get('type'), p.get('access'), ecs)
        return {'methods': methods, 'signals': signals, 'properties': props}
    return None


def model_diff(doc, live):
    diffs = []
    for kind in ('methods', 'signals', 'properties'):
        a, b = doc[kind], live[kind]
        for k in sorted(set(a) | set(b)):
            if k not in b:
                diffs.append('%s %s: documented, not served' % (kind, k))
            elif k not in a:
                diffs.append('%s %s: served, not documented' % (kind, k))
            elif a[k] != b[k]:
                diffs.append('%s %s: documented %r, served %r' % (kind, k, a[k], b[k]))
    return diffs


class Bus(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.double = Double('--token-delay-ms', '0', '--tokens', '3')
        cls.node = Node(cls.double.url, '--tags-interval', '1s', '--probe-interval', '1s')
        tags = cls.double.request('GET', '/api/tags').json()
        cls.models = sorted(m['name'] for m in tags['models'])

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.double.stop()

    def local_entry(self):
        nodes = self.node.prop('org.mycelia.Router1', 'Nodes')
        for n in nodes:
            if n[0] == self.node.node_id:
                return n
        self.fail('local node %s not in Router1.Nodes %r' % (self.node.node_id, nodes))

    def test_services_on_bus(self):
        names = harness.busctl(self.node.bus, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
                               'org.freedesktop.DBus', 'ListNames')['data'][0]
        for name in ('org.mycelia.Shim1', 'org.mycelia.Router1', 'org.mycelia.Gossip1', 'org.mycelia.Discovery1',
                     'org.mycelia.ShardStore1'):
            self.assertIn(name, names)

    def check_xml(self, iface, service=None):
        """dbus/IFACE.xml against what service (default: IFACE's own name) serves at its object."""
        service = service or iface
        xml_dir = testenv.env_path('MYCELIA_DBUS_XML_DIR')
        with open(os.path.join(xml_dir, iface + '.xml')) as f:
            doc = interface_model(f.read(), iface)
        self.assertIsNotNone(doc, 'dbus/%s.xml does not describe %s' % (iface, iface))
        live_xml = harness.introspect_xml(self.node.bus, service, '/' + service.replace('.', '/'))
        live = interface_model(live_xml, iface)
        self.assertIsNotNone(live, '%s does not serve %s' % (service, iface))
        diffs = model_diff(doc, live)
        self.assertEqual(diffs, [], 'dbus/%s.xml and %s disagree:\n  %s' % (iface, service, '\n  '.join(diffs)))

    def test_introspection_process(self):
        # Every daemon serves org.mycelia.Process1 on its object, with its own pid.
        pids = set()
        for service in ('org.mycelia.Shim1', 'org.mycelia.Router1', 'org.mycelia.Gossip1', 'org.mycelia.Discovery1',
                        'org.mycelia.ShardStore1'):
            self.check_xml('org.mycelia.Process1', service)
            path = '/' + service.replace('.', '/')
            pid = harness.busctl(self.node.bus, 'get-property', service, path, 'org.mycelia.Process1', 'Pid')['data']
            owner = harness.busctl(self.node.bus, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
                                   'org.freedesktop.DBus', 'GetConnectionUnixProcessID', 's', service)['data'][0]
            self.assertEqual(pid, owner, service)
            pids.add(pid)
            rss = harness.busctl(self.node.bus, 'get-property', service, path, 'org.mycelia.Process1',
                                 'ResidentMemoryBytes')['data']
            fds = harness.busctl(self.node.bus, 'get-property', service, path, 'org.mycelia.Process1',
                                 'OpenFds')['data']
            self.assertGreater(rss, 1 << 20, service)
            self.assertGreater(fds, 2, service)
        self.assertEqual(len(pids), 5)

    def test_introspection_shim(self):
        self.check_xml('org.mycelia.Shim1')

    def test_introspection_router(self):
        self.check_xml('org.mycelia.Router1')

    def test_introspection_gossip(self):
        self.check_xml('org.mycelia.Gossip1')

    def test_introspection_discovery(self):
        self.check_xml('org.mycelia.Discovery1')

    def test_introspection_shardstore(self):
        self.check_xml('org.mycelia.ShardStore1')
        # The launcher's shardd is this node's: the id the launcher gave every daemon.
        self.assertEqual(self.node.prop('org.mycelia.ShardStore1', 'LocalNodeId'), self.node.node_id)

    def test_busctl_introspect_lists_interfaces(self):
        for svc in ('org.mycelia.Shim1', 'org.mycelia.Router1'):
            out = harness.busctl(self.node.bus, 'introspect', svc, '/' + svc.replace('.', '/'), json_out=False)
            self.assertIn(svc, out)

    def test_nodes_lists_local_node(self):
        entry = wait_until(lambda: (lambda e: e if e[3] == 'up' else None)(self.local_entry()), 5,
                           what='local node up')
        node_id, name, address, state, in_flight, capacity, ttfb, models = entry
        self.assertEqual(name, 'test')
        self.assertEqual(state, 'up')
        self.assertIn(str(self.double.port), address)
        self.assertEqual(sorted(models), self.models)
        self.assertEqual(self.node.prop('org.mycelia.Router1', 'LocalNodeId'), self.node.node_id)

    def test_route(self):
        wait_until(lambda: self.local_entry()[3] == 'up', 5, what='local node up')
        node_id, address, reason = self.node.call('org.mycelia.Router1', 'Route', 'ssas',
                                                  'llama3.2:latest' if 'llama3.2:latest' in self.models
                                                  else self.models[0], '', '0')
        self.assertEqual(node_id, self.node.node_id)
        self.assertIn(str(self.double.port), address)
        self.assertIsInstance(reason, str)

    def test_route_no_route(self):
        err, out = harness.dbus_send_error_name(self.node.bus, 'org.mycelia.Router1', 'Route',
                                                'string:nope', 'string:', 'array:string:')
        self.assertEqual(err, 'org.mycelia.Router1.NoRoute', out)

    def test_shim_counters(self):
        before = self.node.prop('org.mycelia.Shim1', 'RequestsTotal')
        for _ in range(3):
            self.assertEqual(self.node.request('GET', '/api/version').status, 200)
        wait_until(lambda: self.node.prop('org.mycelia.Shim1', 'RequestsTotal') >= before + 3, 3,
                   what='RequestsTotal grown by 3')
        self.assertEqual(self.node.prop('org.mycelia.Shim1', 'ApiAddress'),
                         '%s:%d' % self.node.addr)

    def test_zz_upstream_down_and_up(self):
        # Runs last (name): it stops and restarts the double.
        wait_until(lambda: self.local_entry()[3] == 'up', 5, what='local node up')
        port = self.double.port
        self.double.stop()
        wait_until(lambda: self.local_entry()[3] == 'down', 6, what='local node down after the double stopped')
        self.double.start(port)
        self.assertEqual(self.double.port, port)
        wait_until(lambda: self.local_entry()[3] == 'up', 6, what='local node up after the double restarted')
        r = self.node.request('POST', '/api/show', {'model': self.models[0]})
        self.assertEqual(r.status, 200, r)


if __name__ == '__main__':
    testenv.main()
