#include "config.h"
#include "frontend/admin.h"

int main(int argc, char **argv)
{
	return admin_main(argc, argv);
}
