# pantry_embed_file(OUTPUT_CPP INPUT NAMESPACE SYMBOL) writes OUTPUT_CPP, a source that defines
#   extern const char SYMBOL[];            // INPUT's bytes and a '\0'
#   extern const std::size_t SYMBOLSize;   // the number of INPUT's bytes
# in NAMESPACE, and makes the build configure again when INPUT changes. For the files compiled
# into pantry (the default config, the default seccomp profile, the pytest plugin), so that a
# running pantry needs no file of the source tree and none the host may lack or change.
function(pantry_embed_file output input namespace symbol)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${input})
  file(READ ${input} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
  file(WRITE ${output}.in
    "// Generated from ${input} by pantry_embed_file (cmake/embed_file.cmake).\n"
    "#include <cstddef>\n"
    "namespace ${namespace} {\n"
    "extern const char ${symbol}[] = {${bytes} '\\0'};\n"
    "extern const std::size_t ${symbol}Size = sizeof(${symbol}) - 1;\n"
    "}\n")
  # Rewritten only when the bytes change, so that an unrelated configure rebuilds nothing.
  configure_file(${output}.in ${output} COPYONLY)
endfunction()
