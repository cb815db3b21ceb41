#!/bin/bash
# hkgen-prepare-disk DEVICE LABEL: give a Longhorn disk a filesystem if, and only if, it is blank.
# Written by hkgen.
#
# `blkid -p` probes the device itself (no cache) for every signature it knows: filesystems,
# partition tables, RAID and LVM members, encrypted volumes. Only a device where it finds
# nothing is formatted (whole disk, ext4, no reserved blocks). An existing ext4/xfs/btrfs
# filesystem is kept as it is, so a rebuilt node finds its Longhorn data again; anything else
# is refused and left alone. mkfs runs without -F, so it refuses on its own if a signature
# appeared in between.
#
# Exit: 0 the disk carries a filesystem to mount, 2 refused (something else is on it),
#       3 the device is not present, 1 error.
set -u

if [ $# -ne 2 ]; then
    echo "usage: hkgen-prepare-disk DEVICE LABEL" >&2
    exit 1
fi
dev=$1
label=$2

if [ ! -e "$dev" ]; then
    echo "hkgen-prepare-disk: $dev is not present"
    exit 3
fi

probe=$(blkid -p -o export "$dev" 2>/dev/null)
rc=$?
case $rc in
    2)
        echo "hkgen-prepare-disk: $dev is blank; creating an ext4 filesystem labelled $label"
        if ! mkfs.ext4 -q -L "$label" -m 0 "$dev" </dev/null; then
            echo "hkgen-prepare-disk: mkfs.ext4 failed on $dev" >&2
            exit 1
        fi
        exit 0
        ;;
    0)
        fstype=$(printf '%s\n' "$probe" | sed -n 's/^TYPE=//p')
        pttype=$(printf '%s\n' "$probe" | sed -n 's/^PTTYPE=//p')
        case $fstype in
            ext4 | xfs | btrfs)
                echo "hkgen-prepare-disk: keeping the existing $fstype filesystem on $dev"
                exit 0
                ;;
        esac
        if [ -n "$fstype" ]; then
            what="a $fstype signature"
        elif [ -n "$pttype" ]; then
            what="a $pttype partition table"
        else
            what="data that blkid recognises"
        fi
        echo "hkgen-prepare-disk: refusing to touch $dev: it holds $what." \
            "hkgen never wipes a disk; if its contents may go, erase it yourself (wipefs -a $dev) and reboot." >&2
        exit 2
        ;;
    *)
        echo "hkgen-prepare-disk: cannot probe $dev (blkid exit status $rc)" >&2
        exit 1
        ;;
esac
