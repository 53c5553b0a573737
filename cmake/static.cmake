# TABULA_STATIC: the `tabula` binary of `make dist`, which needs glibc alone (issue #24: copy one file to a
# locked-down cluster node and run it). Off by default: the quick start and `make test` link dynamically as before.
#
# What it does, all at link time (the compiled objects are those of the normal build, so ccache shares them):
# - libstdc++ and libgcc linked statically (-static-libstdc++ -static-libgcc);
# - every library found after this file is included is looked up as a `.a` (CMAKE_FIND_LIBRARY_SUFFIXES), so
#   libtiff, libpng, libjpeg(-turbo), OpenJPEG, zlib and HDF5 come from Debian's static archives;
# - the libraries those archives use themselves (static archives carry no dependency list) are added from
#   pkg-config --static for libtiff (webp, Lerc, zstd, lzma, jpeg, deflate, z; not jbig: see below) and by name for
#   HDF5;
# - no MPI unless TABULA_MPI=ON (then the node's shared libmpi).
#
# HDF5: Debian's libhdf5.a is built with the ROS3 (S3) driver, so its settings name -lcrypto -lcurl. Only the
# objects H5FDros3.o and H5FDs3comms.o call libcurl/libcrypto, and only H5Pset_fapl_ros3 (which tabula never calls)
# pulls them in; a static link takes objects from an archive only on demand, so listing szip (libsz + libaec),
# zlib, libdl and libm is enough and neither libcurl nor OpenSSL ends up in the binary. .ci/dist checks that
# (no curl_/SSL_/EVP_ symbol, dynamic section naming glibc's libraries only).
option(TABULA_STATIC "Link for deployment: glibc is the only shared library (make dist)" OFF)
if(NOT TABULA_STATIC)
  return()
endif()

# MPI stays a shared library from the node (a static Open MPI would not match the node's launcher and network
# stack): TABULA_MPI=ON finds it here, before the .a-only search below, and the top-level find_package(MPI) reuses
# the cached result. AUTO means OFF in this build: the plain dist tarball has no MPI (Slurm arrays + `tabula merge`).
if(TABULA_MPI STREQUAL "ON")
  find_package(MPI REQUIRED COMPONENTS C)
else()
  set(TABULA_MPI OFF)  # a normal variable: shadows the cache entry for this configure only
endif()
set(CMAKE_FIND_LIBRARY_SUFFIXES .a)
set(HDF5_USE_STATIC_LIBRARIES ON)
add_link_options(-static-libstdc++ -static-libgcc)
if(NOT TABULA_CUDA STREQUAL "OFF")
  # The CUDA variant: the binary is the CPU one (glibc alone) and the CUDA backend is the module
  # libtabula_cuda.so in lib/ (engine/cuda_module.h), loaded when a CUDA device is asked for. The module has the
  # CUDA runtime and libstdc++ static inside it; cuBLASLt and cuDNN stay shared (NVIDIA ships no static cuDNN for
  # every version, and they are large), found at run time beside the module ($ORIGIN: lib/) or from the node's
  # CUDA module (LD_LIBRARY_PATH). `.a` is still preferred where both exist.
  set(CMAKE_FIND_LIBRARY_SUFFIXES .a .so)
  set(CMAKE_CUDA_RUNTIME_LIBRARY Static)
  # Exactly the RUNPATH the targets set ($ORIGIN for the module, none for the binary), also in the build tree: no
  # path of the build machine's toolkit leaks into the tarball.
  set(CMAKE_BUILD_WITH_INSTALL_RPATH ON)
endif()

# Adds a static archive's own dependencies to an imported or interface target; `names` are -l names.
function(tabula_static_add_libs target)
  foreach(name IN LISTS ARGN)
    if(name STREQUAL "m" OR name STREQUAL "dl" OR name STREQUAL "pthread" OR name STREQUAL "rt")
      set_property(TARGET ${target} APPEND PROPERTY INTERFACE_LINK_LIBRARIES ${name})  # glibc's own
      continue()
    endif()
    find_library(TABULA_STATIC_${name} NAMES ${name})
    if(NOT TABULA_STATIC_${name} OR NOT TABULA_STATIC_${name} MATCHES "\\.a$")
      message(FATAL_ERROR "TABULA_STATIC=ON needs the static library lib${name}.a (the -dev package that ships it, "
                          "e.g. apt-get install lib${name}-dev), needed by ${target}; found '${TABULA_STATIC_${name}}'")
    endif()
    set_property(TARGET ${target} APPEND PROPERTY INTERFACE_LINK_LIBRARIES ${TABULA_STATIC_${name}})
  endforeach()
endfunction()

# Runs once the top-level CMakeLists.txt has found the dependencies and made the targets.
function(tabula_static_finish)
  pkg_check_modules(TABULA_TIFF_STATIC REQUIRED libtiff-4)
  set(tiff_libs ${TABULA_TIFF_STATIC_STATIC_LIBRARIES})
  # No jbigkit (GPL-2.0-or-later): cmake/tiff_no_jbig.c stands in for libtiff's JBIG codec, so neither tif_jbig.o
  # nor libjbig.a is linked (the link fails on jbg_* if the codec were still reached).
  list(REMOVE_ITEM tiff_libs tiff jbig)
  target_sources(tabula PRIVATE ${PROJECT_SOURCE_DIR}/cmake/tiff_no_jbig.c)
  # glibc 2.35 is the floor (.ci/glibc_floor): cmake/glibc_compat.c says why the static libstdc++ needs this.
  target_sources(tabula PRIVATE ${PROJECT_SOURCE_DIR}/cmake/glibc_compat.c)
  if(TARGET tabula_cuda)
    target_sources(tabula_cuda PRIVATE ${PROJECT_SOURCE_DIR}/cmake/glibc_compat.c)
  endif()
  list(REMOVE_DUPLICATES tiff_libs)
  tabula_static_add_libs(TIFF::TIFF ${tiff_libs})
  foreach(lib IN LISTS TIFF_LIBRARY PNG_LIBRARIES JPEG_LIBRARIES OPENJP2_LINK_LIBRARIES)
    if(lib MATCHES "\\.so")
      message(FATAL_ERROR "TABULA_STATIC=ON found a shared library: ${lib} (install the -dev package's .a)")
    endif()
  endforeach()
  # FindHDF5 lists what h5cc links (libcurl.a, libcrypto.a, and glibc's own libm.a/libdl.a/libpthread.a, which must
  # not be linked statically into a dynamic binary): keep libhdf5.a alone and add what its objects in use need.
  set(hdf5_archive ${HDF5_C_LIBRARY_hdf5})
  if(NOT hdf5_archive MATCHES "\\.a$")
    message(FATAL_ERROR "TABULA_STATIC=ON needs HDF5's static library libhdf5.a (apt-get install libhdf5-dev), "
                        "found '${hdf5_archive}'")
  endif()
  set_property(TARGET tabula_hdf5 PROPERTY INTERFACE_LINK_LIBRARIES ${hdf5_archive})
  tabula_static_add_libs(tabula_hdf5 sz aec z dl m)
  # The CUDA backend links the CUDA runtime by name (CUDA::cudart, shared): the static one here.
  foreach(target tabula_engine_cuda tabula_cuda)
    if(NOT TARGET ${target})
      continue()
    endif()
    foreach(prop LINK_LIBRARIES INTERFACE_LINK_LIBRARIES)
      get_target_property(libs ${target} ${prop})
      if(libs)
        list(TRANSFORM libs REPLACE "^CUDA::cudart$" "CUDA::cudart_static")
        set_property(TARGET ${target} PROPERTY ${prop} ${libs})
      endif()
    endforeach()
  endforeach()
  message(STATUS "tabula: static link (glibc only); libtiff needs: ${tiff_libs}")
endfunction()
cmake_language(DEFER DIRECTORY ${PROJECT_SOURCE_DIR} CALL tabula_static_finish)
