/* A stand-in libamd_smi.so for tests: the real `amdsmi` Python package loads it like ROCm's.
 *
 * The amdsmi wrapper binds every library function as an attribute at import, so the test
 * helper (tests/fakes/amd.py) generates a second C file with a NOT_SUPPORTED stub for every
 * name of amdsmi_wrapper.py that this file does not define, and compiles both together.
 *
 * Devices come from the text file named by $FAKE_AMDSMI_STATE, re-read on every call so the
 * test drives the counters while a meter runs. One line per processor handle (amdsmi order),
 * space-separated key=value fields, `name=` last (it takes the rest of the line):
 *
 *   uuid= devid=<hex> serial=<hex> acc=<energy accumulator> res=<uJ per count>
 *   cur=<current socket W, 65535 = N/A> avg=<average socket W, 65535 = N/A> flags=<int>
 *   oam=<OAM id> bus=<PCI bus> func=<PCI function> part=<KFD partition id> hip=<HIP id>
 *   cpart=<SPX|DPX|QPX|CPX> mpart=<NPS1|NPS4> virt=<0 unknown,1 bare metal,3 guest,4 passthrough>
 *   driver=<version> name=<market name ...>
 *
 * flags: 1 energy counter supported, 2 energy call fails (UNKNOWN_ERROR), 4 power call fails
 *        (UNKNOWN_ERROR), 8 device gone (every device call fails with NOT_FOUND),
 *        16 no partition queries (NOT_SUPPORTED), 32 no enumeration info (NOT_SUPPORTED).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK 0
#define ERR_INVAL 1
#define ERR_NOT_SUPPORTED 2
#define ERR_INIT 18
#define ERR_NOT_FOUND 31
#define ERR_INSUFFICIENT_SIZE 41
#define ERR_UNKNOWN 0xFFFFFFFFu
#define MAX_DEV 16
#define SOCKET ((void *)0x5150)

typedef struct {
    char uuid[64], serial[32], cpart[16], mpart[16], driver[64], name[128];
    unsigned devid, cur, avg, flags, oam, bus, func, part, hip, virt;
    unsigned long long acc;
    float res;
} dev_t_;

#pragma pack(push, 1)
typedef struct {
    char market_name[256];
    uint32_t vendor_id;
    char vendor_name[256];
    uint32_t subvendor_id;
    uint64_t device_id;
    uint32_t rev_id;
    char asic_serial[256];
    uint32_t oam_id, num_of_compute_units;
    uint8_t padding0[4];
    uint64_t target_graphics_version;
    uint32_t subsystem_id, reserved[21];
} asic_info_t;

typedef struct {
    uint64_t socket_power;
    uint32_t current_socket_power, average_socket_power;
    uint64_t gfx_voltage, soc_voltage, mem_voltage;
    uint32_t power_limit;
    uint8_t padding0[4];
    uint64_t reserved[18];
} power_info_t;

typedef struct {
    uint32_t drm_render, drm_card, hsa_id, hip_id;
    char hip_uuid[256];
} enumeration_info_t;

typedef struct {
    uint64_t kfd_id;
    uint32_t node_id, current_partition_id, reserved[12];
} kfd_info_t;

typedef struct {
    char driver_version[256], driver_date[256], driver_name[256];
} driver_info_t;
#pragma pack(pop)

/* Sizes the tests compare with the installed amdsmi's ctypes structures. */
size_t fake_amdsmi_struct_size(int which) {
    switch (which) {
    case 0: return sizeof(asic_info_t);
    case 1: return sizeof(power_info_t);
    case 2: return sizeof(enumeration_info_t);
    case 3: return sizeof(kfd_info_t);
    case 4: return sizeof(driver_info_t);
    default: return 0;
    }
}

static dev_t_ devs[MAX_DEV];
static int initialized;

static void field(dev_t_ *d, const char *key, const char *val) {
#define STR(k) if (!strcmp(key, #k)) { snprintf(d->k, sizeof d->k, "%s", val); return; }
#define NUM(k, base) if (!strcmp(key, #k)) { d->k = (unsigned)strtoul(val, NULL, base); return; }
    STR(uuid) STR(serial) STR(cpart) STR(mpart) STR(driver)
    NUM(devid, 16) NUM(cur, 10) NUM(avg, 10) NUM(flags, 10) NUM(oam, 10) NUM(bus, 10)
    NUM(func, 10) NUM(part, 10) NUM(hip, 10) NUM(virt, 10)
    if (!strcmp(key, "acc")) { d->acc = strtoull(val, NULL, 10); return; }
    if (!strcmp(key, "res")) { d->res = strtof(val, NULL); return; }
#undef STR
#undef NUM
}

static int load(void) {
    const char *path = getenv("FAKE_AMDSMI_STATE");
    FILE *f = path ? fopen(path, "r") : NULL;
    int n = 0;
    char line[1024];
    if (!f) return -1;
    while (n < MAX_DEV && fgets(line, sizeof line, f)) {
        dev_t_ *d = &devs[n];
        char *p = line;
        memset(d, 0, sizeof *d);
        line[strcspn(line, "\n")] = 0;
        while (*p) {
            char *eq, *end;
            while (*p == ' ') p++;
            if (!strncmp(p, "name=", 5)) { snprintf(d->name, sizeof d->name, "%s", p + 5); break; }
            eq = strchr(p, '=');
            if (!eq) break;
            end = strchr(eq, ' ');
            if (end) *end = 0;
            *eq = 0;
            field(d, p, eq + 1);
            if (!end) break;
            p = end + 1;
        }
        if (d->uuid[0]) n++;
    }
    fclose(f);
    return n;
}

static dev_t_ *get(void *handle, uint32_t *err) {
    long i = (long)handle - 1;
    int n;
    if (!initialized) { *err = 32; return NULL; } /* AMDSMI_STATUS_NOT_INIT */
    n = load();
    if (i < 0 || i >= n) { *err = ERR_INVAL; return NULL; }
    if (devs[i].flags & 8) { *err = ERR_NOT_FOUND; return NULL; }
    *err = OK;
    return &devs[i];
}

#define DEVICE(h) uint32_t err; dev_t_ *d = get(h, &err); if (!d) return err

uint32_t amdsmi_init(uint64_t flags) {
    (void)flags;
    if (load() < 0) return ERR_INIT;
    initialized = 1;
    return OK;
}

uint32_t amdsmi_shut_down(void) { initialized = 0; return OK; }

uint32_t amdsmi_get_socket_handles(uint32_t *count, void **handles) {
    if (!initialized) return 32;
    if (!count) return ERR_INVAL;
    if (handles && *count >= 1) handles[0] = SOCKET;
    *count = 1;
    return OK;
}

uint32_t amdsmi_get_processor_handles(void *socket, uint32_t *count, void **handles) {
    int n = load();
    if (!initialized) return 32;
    if (socket != SOCKET || !count || n < 0) return ERR_INVAL;
    if (handles) {
        if (*count < (uint32_t)n) return ERR_INSUFFICIENT_SIZE;
        for (int i = 0; i < n; i++) handles[i] = (void *)(long)(i + 1);
    }
    *count = (uint32_t)n;
    return OK;
}

uint32_t amdsmi_get_gpu_device_uuid(void *h, uint32_t *length, char *uuid) {
    DEVICE(h);
    snprintf(uuid, *length, "%s", d->uuid);
    return OK;
}

uint32_t amdsmi_get_gpu_asic_info(void *h, asic_info_t *info) {
    DEVICE(h);
    memset(info, 0, sizeof *info);
    snprintf(info->market_name, sizeof info->market_name, "%s", d->name);
    info->vendor_id = 0x1002;
    snprintf(info->vendor_name, sizeof info->vendor_name, "Advanced Micro Devices Inc. [AMD/ATI]");
    info->subvendor_id = 0x1002;
    info->device_id = d->devid;
    snprintf(info->asic_serial, sizeof info->asic_serial, "%s", d->serial);
    info->oam_id = d->oam;
    info->num_of_compute_units = 104;
    info->target_graphics_version = 0x90a;
    info->subsystem_id = 0x0c34;
    return OK;
}

uint32_t amdsmi_get_gpu_device_bdf(void *h, uint64_t *bdf) {
    DEVICE(h);
    *bdf = (uint64_t)(d->func & 7) | (uint64_t)(d->bus & 0xFF) << 8; /* device 0, domain 0 */
    return OK;
}

uint32_t amdsmi_get_gpu_enumeration_info(void *h, enumeration_info_t *info) {
    DEVICE(h);
    if (d->flags & 32) return ERR_NOT_SUPPORTED;
    memset(info, 0, sizeof *info);
    info->drm_card = info->hsa_id = (uint32_t)((long)h - 1);
    info->drm_render = 128 + info->drm_card;
    info->hip_id = d->hip;
    snprintf(info->hip_uuid, sizeof info->hip_uuid, "GPU-%s", d->serial);
    return OK;
}

uint32_t amdsmi_get_gpu_kfd_info(void *h, kfd_info_t *info) {
    DEVICE(h);
    memset(info, 0, sizeof *info);
    info->kfd_id = 1000 + (uint64_t)((long)h);
    info->node_id = (uint32_t)((long)h);
    info->current_partition_id = d->part;
    return OK;
}

static uint32_t partition(void *h, char *out, uint32_t len, int memory) {
    DEVICE(h);
    if (d->flags & 16) return ERR_NOT_SUPPORTED;
    snprintf(out, len, "%s", memory ? (d->mpart[0] ? d->mpart : "NPS1")
                                    : (d->cpart[0] ? d->cpart : "SPX"));
    return OK;
}

uint32_t amdsmi_get_gpu_compute_partition(void *h, char *out, uint32_t len) {
    return partition(h, out, len, 0);
}

uint32_t amdsmi_get_gpu_memory_partition(void *h, char *out, uint32_t len) {
    return partition(h, out, len, 1);
}

uint32_t amdsmi_get_gpu_virtualization_mode(void *h, uint32_t *mode) {
    DEVICE(h);
    *mode = d->virt;
    return OK;
}

uint32_t amdsmi_get_gpu_driver_info(void *h, driver_info_t *info) {
    DEVICE(h);
    memset(info, 0, sizeof *info);
    snprintf(info->driver_version, sizeof info->driver_version, "%s", d->driver);
    snprintf(info->driver_date, sizeof info->driver_date, "2024/01/01 00:00");
    snprintf(info->driver_name, sizeof info->driver_name, "amdgpu");
    return OK;
}

uint32_t amdsmi_get_energy_count(void *h, uint64_t *acc, float *res, uint64_t *ts) {
    DEVICE(h);
    if (!(d->flags & 1)) return ERR_NOT_SUPPORTED;
    if (d->flags & 2) return ERR_UNKNOWN;
    *acc = d->acc;
    *res = d->res;
    *ts = 0;
    return OK;
}

uint32_t amdsmi_get_power_info(void *h, power_info_t *info) {
    DEVICE(h);
    if (d->flags & 4) return ERR_UNKNOWN;
    memset(info, 0, sizeof *info);
    info->current_socket_power = d->cur;
    info->average_socket_power = d->avg;
    info->socket_power = d->cur != 65535 ? d->cur : d->avg;
    info->power_limit = 300;
    return OK;
}
