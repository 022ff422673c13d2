/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* myceliactl key: the mesh keyring through org.mycelia.Gossip1 (docs/key-rotation.md): install,
 * use and remove keys, list them by id. A key is given as a file (what `myceliactl keygen FILE`
 * wrote: it stays out of the process list), as base64, or (use, remove) as its id. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bus-names.h"
#include "mesh-key.h"
#include "mesh-keyring.h"
#include "myceliactl.h"

/* The argument as Gossip1 takes it: a file's key in base64, else the argument itself. */
static int key_argument(const char *arg, char buf[128], const char **ret) {
        uint8_t key[MESH_KEY_SIZE];
        int r;

        if (!strchr(arg, '/') || access(arg, F_OK) < 0) {
                *ret = arg;
                return 0;
        }
        r = mesh_key_load(arg, key);
        if (r < 0) {
                fprintf(stderr, "Failed to read a mesh key from %s: %s\n", arg, strerror(-r));
                return -EXIT_FAILURE;
        }
        r = mesh_key_format(key, buf, 128);
        explicit_bzero(key, sizeof(key));
        if (r < 0)
                return -EXIT_FAILURE;
        *ret = buf;
        return 0;
}

static int key_list(sd_bus *bus) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        json_object *array = NULL;
        const char *id;
        int primary, r;

        r = sd_bus_get_property(bus, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, "Keys", &error, &reply,
                                "a(sb)");
        if (r < 0)
                return call_failed(GOSSIP1_BUS_NAME, &error, r);
        r = sd_bus_message_enter_container(reply, 'a', "(sb)");
        if (r < 0)
                return -EXIT_FAILURE;
        if (arg_json)
                array = json_object_new_array();
        else if (arg_legend)
                printf("%-16s %s\n", "KEY ID", "PRIMARY");
        while ((r = sd_bus_message_read(reply, "(sb)", &id, &primary)) > 0) {
                if (array) {
                        json_object *o = json_object_new_object();

                        json_object_object_add(o, "id", json_object_new_string(id));
                        json_object_object_add(o, "primary", json_object_new_boolean(primary));
                        json_object_array_add(array, o);
                } else
                        printf("%-16s %s\n", id, primary ? "yes" : "no");
        }
        if (array)
                return json_print(array);
        return r < 0 ? -EXIT_FAILURE : 0;
}

int verb_key(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        static const struct {
                const char *verb, *method, *done;
        } ops[] = {
                { "install", "InstallKey", "Installed; this node accepts it now. Install it on every node, then 'key use' it on every node." },
                { "use", "UseKey", "This node sends with it now." },
                { "remove", "RemoveKey", "Removed; this node no longer accepts it." },
        };
        const char *key;
        char buf[128];
        int r;

        if (streq(argv[1], "list")) {
                if (argc != 2) {
                        fprintf(stderr, "Usage: myceliactl key list\n");
                        return -EXIT_USAGE;
                }
                return key_list(bus);
        }
        for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
                if (!streq(argv[1], ops[i].verb))
                        continue;
                if (argc != 3) {
                        fprintf(stderr, "Usage: myceliactl key %s KEY (a key file, base64%s)\n", ops[i].verb,
                                i == 0 ? "" : ", or a key id from 'key list'");
                        return -EXIT_USAGE;
                }
                r = key_argument(argv[2], buf, &key);
                if (r < 0)
                        return r;
                r = sd_bus_call_method(bus, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, ops[i].method,
                                       &error, NULL, "s", key);
                explicit_bzero(buf, sizeof(buf));
                if (r < 0)
                        return call_failed(GOSSIP1_BUS_NAME, &error, r);
                if (!arg_json)
                        printf("%s\n", ops[i].done);
                return 0;
        }
        fprintf(stderr, "Unknown key command '%s': install, use, remove or list.\n", argv[1]);
        return -EXIT_USAGE;
}
