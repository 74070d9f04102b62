# The upstream client's tests (included from this folder's CMakeLists.txt). They also check the
# private NO_PROXY rules, so they see proxy/src.
pantry_test(proxy_client_test unit SOURCES client_test.cpp LIBS pantry_proxy)
target_include_directories(proxy_client_test PRIVATE ${PROJECT_SOURCE_DIR}/proxy/src)
